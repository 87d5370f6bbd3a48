"""A text file's ``tell()`` and ``seek()`` in every encoding, stateful ones
included (iso2022_jp's shifts, utf-7's base64 runs, utf-16's byte order after
the BOM, a ``\\r`` the newline decoder holds back): a cookie given to either
``seek()``, fastio's or the built-in ``open``'s, reads on with the text the
built-in reads from the same character, and where the built-in's cookie is
a plain byte position, fastio's is the same number. (Where it is not, the
two may name different bytes of one place: a run of bytes that decode to no
character, an escape sequence, can be passed or not, and the built-in's
choice depends on its own read sizes.)"""

from __future__ import annotations

import pytest

import fastio.asyncio as fa

from test_asyncio_files import engine, run_on  # noqa: F401

LINE = "abc\n日本語のテキスト\nmixed ascii 日本\r\nend\rX\n"
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "iso2022_jp", "utf-7", "shift_jis"]


def builtin_marks(path, encoding, newline):
    """[(line, cookie after it)] and [(n, cookie after read(n), the rest)]."""
    with open(path, encoding=encoding, newline=newline) as f:
        lines = []
        while True:
            line = f.readline()
            if not line:
                break
            lines.append((line, f.tell()))
    reads = []
    for n in (1, 2, 3, 5, 7, 11):
        with open(path, encoding=encoding, newline=newline) as f:
            f.read(n)
            cookie = f.tell()
            reads.append((n, cookie, f.read()))
    return lines, reads


def rest_from(path, encoding, newline, cookie):
    with open(path, encoding=encoding, newline=newline) as f:
        f.seek(cookie)
        return f.read()


def assert_same_places(got, want):
    """``got`` and ``want``, lists of (..., cookie): plain cookies equal."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:-1] == w[:-1]
        if w[-1] < 1 << 64:
            assert g[-1] == w[-1], (g, w)


@pytest.mark.parametrize("newline", [None, "", "\r\n"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cookies_are_the_builtins_and_lead_back_to_the_same_text(backend, engine, tmp_path, encoding,
                                                                  newline):
    path = tmp_path / "t"
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(LINE * 3)
    want_lines, want_reads = builtin_marks(path, encoding, newline)

    async def go():
        async with fa.open(path, encoding=encoding, newline=newline) as f:
            lines = []
            while True:
                line = await f.readline()
                if not line:
                    break
                lines.append((line, await f.tell()))
            rests = []
            for _line, cookie in lines:
                assert await f.seek(cookie) == cookie
                rests.append(await f.read())
        reads = []
        for n, _cookie, _rest in want_reads:
            async with fa.open(path, encoding=encoding, newline=newline) as f:
                await f.read(n)
                cookie = await f.tell()
                reads.append((n, cookie, await f.read()))
        return lines, rests, reads

    lines, rests, reads = run_on(backend, engine, go)
    assert_same_places(lines, want_lines)
    for i, rest in enumerate(rests):
        assert rest == "".join(line for line, _ in want_lines[i + 1:])
        assert rest_from(path, encoding, newline, lines[i][1]) == rest
    assert_same_places([(n, rest, cookie) for n, cookie, rest in reads],
                       [(n, rest, cookie) for n, cookie, rest in want_reads])
    for _n, cookie, rest in reads:
        assert rest_from(path, encoding, newline, cookie) == rest


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "iso2022_jp", "utf-7"])
def test_cookies_across_read_chunks(backend, engine, tmp_path, encoding):
    # More than one 64 KiB read: characters (and shift states) cut at a
    # chunk's end go on in the next, where the cookie must still find them.
    path = tmp_path / "t"
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(LINE * 2000)
    want_lines, _reads = builtin_marks(path, encoding, None)
    picks = list(range(0, len(want_lines), 97))

    async def go():
        async with fa.open(path, encoding=encoding) as f:
            lines = []
            while True:
                line = await f.readline()
                if not line:
                    break
                lines.append((line, await f.tell()))
            heads = []
            for i in picks:
                await f.seek(lines[i][1])
                heads.append(await f.read(40))
            return lines, heads

    lines, heads = run_on(backend, engine, go)
    assert_same_places(lines, want_lines)
    for i, head in zip(picks, heads):
        assert head == rest_from(path, encoding, None, want_lines[i][1])[:40]
        assert head == rest_from(path, encoding, None, lines[i][1])[:40]


@pytest.mark.parametrize("encoding", ["utf-16", "iso2022_jp"])
def test_a_builtin_cookie_seeks_the_same_character(backend, engine, tmp_path, encoding):
    path = tmp_path / "t"
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(LINE * 3)
    _lines, want_reads = builtin_marks(path, encoding, None)

    async def go():
        async with fa.open(path, encoding=encoding) as f:
            out = []
            for _n, cookie, _rest in want_reads:
                await f.seek(cookie)
                out.append(await f.read())
            return out

    assert run_on(backend, engine, go) == [rest for _n, _cookie, rest in want_reads]


def test_a_plain_position_in_an_iso2022_file_starts_in_the_initial_state(backend, engine, tmp_path):
    # The built-in's seek(1) here makes CPython's codec call a NULL function
    # (flags 0 is no ISO-2022 state); fastio's starts the decoder afresh.
    path = tmp_path / "t"
    path.write_bytes("abc日本語def\n".encode("iso2022_jp") * 2)

    async def go():
        async with fa.open(path, encoding="iso2022_jp") as f:
            assert await f.seek(1) == 1
            return await f.read()

    assert run_on(backend, engine, go) == "bc日本語def\n" + "abc日本語def\n"
