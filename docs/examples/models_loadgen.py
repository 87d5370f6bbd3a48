"""An echo server of fastio.models under the C load generator of
fastio.loadgen (docs/guide/models.md, docs/guide/loadgen.md)."""

from fastio import loadgen, models

with models.get("epoll")(("127.0.0.1", 0)) as server:
    print("serving on", server.address[0])
    result = loadgen.run(server.address, connections=4, duration=0.2)
    print("errors:", result.errors)  # every echoed byte was checked
    print("ok:", result.ok, "requests > 0:", result.requests > 0)
print(f"the server used {server.cpu_time():.2f} CPU seconds")  # stop(): everything closed
