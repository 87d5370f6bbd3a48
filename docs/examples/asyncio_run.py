"""The ways to run a coroutine on fastio's event loop (docs/guide/asyncio.md)."""

import asyncio
import sys

import fastio.asyncio


async def main():
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)
    # loop.engine exists on the compiled loop only (the pure backend's Loop is SelectorLoop)
    return f"{type(loop).__name__}, engine {getattr(loop, 'engine', None)}"


# like uvloop.run() / asyncio.run()
print("fastio.asyncio.run:", fastio.asyncio.run(main()))

# asyncio.Runner with a loop factory (3.11+)
if sys.version_info >= (3, 11):
    with asyncio.Runner(loop_factory=fastio.asyncio.Loop) as runner:
        print("asyncio.Runner:", runner.run(main()))

# asyncio.run with a loop factory (3.12+)
if sys.version_info >= (3, 12):
    print("asyncio.run(loop_factory=...):", asyncio.run(main(), loop_factory=fastio.asyncio.Loop))

# a loop of your own
loop = fastio.asyncio.new_event_loop()
try:
    print("run_until_complete:", loop.run_until_complete(main()))
finally:
    loop.close()
