"""The compiled modules run on any CPU of their architecture.

A wheel is built once and installed on machines we never see, so its code may
use only the baseline instruction set (x86-64: SSE2 and below; no SSE3+,
AVX, AVX-512, BMI, POPCNT...). Two independent checks, on the ``.so`` files
actually imported:

- the compiler's own record (``DW_AT_producer`` in the debug info, when built
  with ``-g`` as CPython's flags do) shows no ``-march``/``-mcpu`` beyond the
  baseline and no ``-m<extension>`` switch;
- on x86_64, ``objdump -d`` shows no instruction that needs an extension:
  no ``%ymm``/``%zmm``/mask registers, no VEX/EVEX-encoded (``v``-prefixed)
  instruction, none of the listed SSE3...SSE4.2/BMI/ABM ones.

Each check skips, saying why, where its tool (readelf, objdump) is missing.
"""

from __future__ import annotations

import importlib.machinery
import pathlib
import pkgutil
import platform
import re
import shutil
import subprocess

import pytest

import fastio._c

MACHINE = platform.machine()


def shared_objects() -> list[pathlib.Path]:
    found = []
    for info in pkgutil.iter_modules(fastio._c.__path__):
        spec = info.module_finder.find_spec(info.name)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            found.append(pathlib.Path(spec.origin))
    assert found, "no compiled module found in fastio._c"
    return sorted(found)


SOS = shared_objects()
IDS = [p.name.split(".")[0] for p in SOS]

# The -march values that mean "the baseline" per architecture.
BASELINE_MARCH = {
    "x86_64": {"x86-64"},
    "aarch64": {"armv8-a"},
}
# -m<ext> switches that enable x86 extensions (as GCC records them).
X86_EXTENSION_SWITCH = re.compile(
    r"(?:^|\s)-m(?:sse3|ssse3|sse4(?:\.\d|a)?|avx\w*|fma\w*|bmi2?|popcnt|lzcnt|f16c|"
    r"aes|pclmul|sha|movbe|adx|rdrnd|rdseed|xsave\w*|cx16|vpclmulqdq|gfni|vaes)\b"
)

# Instructions past baseline x86-64 (SSE2) that can appear without a v prefix.
X86_POST_BASELINE = {
    # SSE3
    "addsubpd", "addsubps", "haddpd", "haddps", "hsubpd", "hsubps", "lddqu",
    "movddup", "movshdup", "movsldup", "monitor", "mwait",
    # SSSE3
    "pabsb", "pabsw", "pabsd", "palignr", "phaddw", "phaddd", "phaddsw", "phsubw",
    "phsubd", "phsubsw", "pmaddubsw", "pmulhrsw", "pshufb", "psignb", "psignw", "psignd",
    # SSE4.1
    "blendpd", "blendps", "blendvpd", "blendvps", "dppd", "dpps", "extractps", "insertps",
    "movntdqa", "mpsadbw", "packusdw", "pblendvb", "pblendw", "pcmpeqq", "pextrb", "pextrd",
    "pextrq", "phminposuw", "pinsrb", "pinsrd", "pinsrq", "pmaxsb", "pmaxsd", "pmaxud",
    "pmaxuw", "pminsb", "pminsd", "pminud", "pminuw", "pmovsxbw", "pmovsxbd", "pmovsxbq",
    "pmovsxwd", "pmovsxwq", "pmovsxdq", "pmovzxbw", "pmovzxbd", "pmovzxbq", "pmovzxwd",
    "pmovzxwq", "pmovzxdq", "pmuldq", "pmulld", "ptest", "roundpd", "roundps", "roundsd",
    "roundss",
    # SSE4.2, POPCNT, ABM/LZCNT, BMI1/2, MOVBE, ADX, AES, CLMUL, SHA, CMPXCHG16B
    "crc32", "crc32b", "crc32w", "crc32l", "crc32q", "pcmpestri", "pcmpestrm", "pcmpistri",
    "pcmpistrm", "pcmpgtq", "popcnt", "lzcnt", "tzcnt", "andn", "bextr", "blsi", "blsmsk",
    "blsr", "bzhi", "mulx", "pdep", "pext", "rorx", "sarx", "shlx", "shrx", "movbe", "adcx",
    "adox", "aesenc", "aesenclast", "aesdec", "aesdeclast", "aesimc", "aeskeygenassist",
    "pclmulqdq", "sha1rnds4", "sha1nexte", "sha1msg1", "sha1msg2", "sha256rnds2",
    "sha256msg1", "sha256msg2", "cmpxchg16b", "rdrand", "rdseed",
}
# AT&T mnemonics that begin with v but are baseline (not VEX-encoded).
X86_V_BASELINE = {"verr", "verw"}
X86_WIDE_REGISTER = re.compile(r"%(?:ymm|zmm)\d+|%k[0-7]\b")


def producers(so: pathlib.Path) -> list[str]:
    out = subprocess.run(
        ["readelf", "--debug-dump=info", str(so)], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in out.splitlines():
        if "DW_AT_producer" not in line:
            continue
        value = line.split(":", 1)[1].strip()
        if value.startswith("(indirect"):  # "(indirect string, offset: 0x..): GNU C11 ..."
            value = value.split("): ", 1)[-1]
        found.append(value)
    return found


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is not installed")
@pytest.mark.parametrize("so", SOS, ids=IDS)
def test_recorded_compiler_flags(so):
    found = [p for p in producers(so) if p.startswith("GNU") or "clang" in p]
    if not found:
        pytest.skip(f"{so.name} has no DW_AT_producer (built without -g or stripped)")
    baseline = BASELINE_MARCH.get(MACHINE)
    for producer in found:
        for flag in re.findall(r"-m(?:arch|cpu)=(\S+)", producer):
            assert flag != "native", f"{so.name} was built with -march/-mcpu=native: {producer}"
            if baseline is not None:
                assert flag in baseline, f"{so.name}: -march={flag} is past the {MACHINE} baseline: {producer}"
        if MACHINE == "x86_64":
            switch = X86_EXTENSION_SWITCH.search(producer)
            assert switch is None, f"{so.name} enables {switch.group().strip()}: {producer}"


@pytest.mark.skipif(MACHINE != "x86_64", reason="the instruction scan knows x86-64 only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
@pytest.mark.parametrize("so", SOS, ids=IDS)
def test_instructions_are_baseline_x86_64(so):
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(so)], capture_output=True, text=True, check=True
    ).stdout
    bad = set()
    count = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].rstrip().endswith(":"):
            continue
        insn = parts[1].strip()
        if not insn or insn.startswith("("):
            continue
        count += 1
        words = insn.split()
        # Skip prefixes (lock, rep, notrack, data16, cs...) to the mnemonic.
        while len(words) > 1 and words[0] in {"lock", "rep", "repz", "repe", "repnz", "repne", "notrack",
                                               "data16", "cs", "ds", "es", "ss", "fs", "gs", "bnd", "addr32"}:
            words = words[1:]
        mnemonic = words[0]
        if (
            mnemonic in X86_POST_BASELINE
            or (mnemonic.startswith("v") and mnemonic not in X86_V_BASELINE)
            or X86_WIDE_REGISTER.search(insn)
        ):
            bad.add(insn)
    assert count > 100, f"objdump decoded only {count} instructions in {so.name}"
    assert not bad, f"{so.name} uses instructions past baseline x86-64: {sorted(bad)[:20]}"
