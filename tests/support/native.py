"""Native test subjects built once per process: the C examples (gcc), the Rust probe crate's
examples and the Rust trader (cargo). Each checks its tool first (``need_tool``: a skip outside
CI, a failure under it) and builds where the product builds, so a second call is quick."""

from pathlib import Path

from conftest import missing_tool, need_tool, needs_tool

CARGO = "apt-get install cargo"
needs_cargo = needs_tool("cargo", install=CARGO)  # a mark for tests that build with cargo


def c_example(name: str, out_dir: Path) -> Path:
    """``probe/examples/<name>`` compiled against the C header into ``out_dir``."""
    from tickscope.collectors.run.bench import build_c

    need_tool("gcc", "cc", install="apt-get install gcc")
    return build_c(name, out_dir)


def rust_example(name: str, probes: bool = True) -> Path:
    """``probe/rust/examples/<name>.rs`` built with cargo (``probes=False``: the crate's probes off)."""
    from tickscope.collectors.run.bench import build_rust

    need_tool("cargo", install=CARGO)
    return build_rust(name, probes=probes)


def rust_trader_binary(loop: str = "busy") -> Path:
    """The Rust reference trader (``pipeline/rust_trader``), built as ``profile --trader rust`` does;
    ``loop="tokio"``: the build with the tokio loop, which needs Debian's tokio offline."""
    from tickscope.collectors.run.launch import TOKIO_APT, build_rust_trader, debian_source_config

    need_tool("cargo", install=CARGO)
    if loop == "tokio" and not debian_source_config():
        missing_tool("tokio (Debian's crate sources, /usr/share/cargo/registry/tokio-1.*)", TOKIO_APT)
    return build_rust_trader(loop=loop)
