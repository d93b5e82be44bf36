#!/usr/bin/env python3
"""Generate a static PyPI index and a cargo sparse registry for the gate benchmark
(bench/run-pypi-crates).

Layout under OUT/registry (served by nginx; see bench/run-pypi-crates for the configuration):

    simple/index.html, simple/index.json          the root listing (PEP 503 / PEP 691)
    simple/<project>/index.html                   the project page, PEP 503 HTML
    simple/<project>/index.json                   the project page, PEP 691 JSON (api-version 1.1),
                                                  served when the client asks for
                                                  application/vnd.pypi.simple.v1+json
    packages/<project>/<filename>                 every wheel and sdist listed
    packages/<project>/<wheel>.metadata           PEP 658 core metadata of every wheel
    crates/index/config.json                      {"dl": "<upstream>/crates/dl"}
    crates/index/<prefix>/<crate>                 the crate's index file (JSON lines)
    crates/dl/<crate>/<version>/download          every .crate listed

The PyPI project is shaped like `requests`: ~150 releases, a wheel and an sdist each, upload
times spread over the years before 2025, `requires-python`, sizes, sha256 hashes and
`core-metadata` hashes, so its simple page has a realistic size. Every listed file exists and
its hash is its sha256: each wheel is a real zip (`<pkg>/…`, `<dist-info>/METADATA`, `WHEEL`,
`RECORD`), each sdist a real gzip'd tar with PKG-INFO. The newest wheel — the one the benchmark
requests — is ~60 KB; the others are small. The crate has ~100 versions; each index line carries
`cksum` = sha256 of a real `.crate` (gzip'd tar of `<name>-<version>/Cargo.toml`, `src/lib.rs`,
…) and a `pubtime` years old; the newest `.crate` is ~50 KB.

Names carry the `moatbench-` prefix so the default policy's typosquat rule does not fire and no
advisory applies: what is measured is the allow path. Deterministic for a given seed and
upstream URL.
"""

import argparse
import base64
import datetime as dt
import hashlib
import html
import io
import json
import os
import random
import sys
import zipfile

from gen_fixture import make_tarball

PROJECT = "moatbench-requests"
CRATE = "moatbench-widgets"
EPOCH = dt.datetime(2012, 2, 14, 9, 30, 0, tzinfo=dt.timezone.utc)
ZIP_TIME = (2020, 2, 2, 0, 0, 0)
TAR_MTIME = 1580601600  # 2020-02-02

WORDS = (
    "session request response adapter header cookie timeout retry proxy stream chunk encode "
    "decode status redirect history auth token certificate verify params payload content "
    "json text url scheme netloc path query fragment connection pool manager hooks"
).split()


def iso_pypi(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


def iso_crates(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def py_source(rng, size):
    """Python-looking text of about `size` bytes; random identifiers and numbers so that it
    compresses about like real code does (~3:1)."""
    out, n, i = [], 0, 0
    while n < size:
        w = rng.sample(WORDS, 4)
        tag = rng.getrandbits(40)
        line = (
            f"def {w[0]}_{w[1]}_{i}({w[2]}, {w[3]}=None):\n"
            f"    \"\"\"Return the {w[1]} of a {w[2]} ({tag:010x}).\"\"\"\n"
            f"    if {w[3]} is None:\n"
            f"        {w[3]} = {rng.randint(0, 99999)}\n"
            f"    return {w[2]}.{w[0]}({w[3]}, {w[1]}={rng.random():.6f})\n\n"
        )
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out)


def rs_source(rng, size):
    out, n, i = [], 0, 0
    while n < size:
        w = rng.sample(WORDS, 3)
        line = (
            f"/// {w[0].capitalize()} the {w[1]} of a {w[2]} ({rng.getrandbits(40):010x}).\n"
            f"pub fn {w[0]}_{w[1]}_{i}(x: u64) -> u64 {{\n"
            f"    x.wrapping_mul({rng.randint(3, 2**31)}).rotate_left({rng.randint(1, 63)}) ^ {rng.getrandbits(48)}\n"
            f"}}\n\n"
        )
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out)


# ------------------------------------------------------------------------------------- PyPI


def versions_like_requests(n):
    """`n` release numbers, in order: 0.x.y, 1.x.y, 2.x.y, the way a long-lived project grows."""
    out = []
    series = [(0, 15, 4), (1, 3, 4), (2, 40, 4)]  # (major, minors, patches per minor)
    while len(out) < n:
        for major, minors, patches in series:
            for minor in range(minors):
                for patch in range(patches):
                    v = f"{major}.{minor}.{patch}"
                    if v not in out:
                        out.append(v)
        series = [(3, 40, 6)]
    return out[:n]


def metadata_text(version, summary):
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {PROJECT}\n"
        f"Version: {version}\n"
        f"Summary: {summary}\n"
        "Home-page: https://example.invalid/moatbench/requests\n"
        "Author: Moat Bench\n"
        "Author-email: bench@example.invalid\n"
        "License: Apache-2.0\n"
        "Classifier: Programming Language :: Python :: 3\n"
        "Classifier: License :: OSI Approved :: Apache Software License\n"
        "Requires-Python: >=3.8\n"
        "Description-Content-Type: text/markdown\n"
        "Provides-Extra: socks\n"
        "Requires-Dist: PySocks!=1.5.7,>=1.5.6; extra == \"socks\"\n"
        "\n"
        f"# {PROJECT}\n\n{summary}.\n"
    ).encode()


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(version, rng, target_bytes):
    """A real wheel (zip). Modules are added until the zip reaches `target_bytes`."""
    pkg = PROJECT.replace("-", "_")
    dist_info = f"{pkg}-{version}.dist-info"
    summary = "moat benchmark fixture shaped like requests"
    files = [(f"{pkg}/__init__.py", f'"""{summary}."""\n__version__ = "{version}"\n'.encode())]
    meta = metadata_text(version, summary)

    def build(files):
        wheel = (
            "Wheel-Version: 1.0\nGenerator: moatbench (gen_pypi_crates_fixture.py)\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n\n"
        ).encode()
        all_files = files + [
            (f"{dist_info}/METADATA", meta),
            (f"{dist_info}/WHEEL", wheel),
            (f"{dist_info}/top_level.txt", f"{pkg}\n".encode()),
            (f"{dist_info}/LICENSE", b"Apache License 2.0 (moat benchmark fixture)\n"),
        ]
        record = "".join(f"{name},{record_hash(data)},{len(data)}\n" for name, data in all_files)
        record += f"{dist_info}/RECORD,,\n"
        all_files.append((f"{dist_info}/RECORD", record.encode()))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for name, data in all_files:
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        return buf.getvalue()

    data = build(files)
    module = 0
    while len(data) < target_bytes:
        missing = target_bytes - len(data)
        # ~3.2:1 compression; never add more than 12 KB of source at a time
        chunk = max(600, min(12_000, int(missing * 3.2)))
        files.append((f"{pkg}/mod_{module:02d}.py", py_source(rng, chunk).encode()))
        module += 1
        data = build(files)
    return data, meta


def make_sdist(version, rng):
    pkg = PROJECT.replace("-", "_")
    root = f"{pkg}-{version}"
    meta = metadata_text(version, "moat benchmark fixture shaped like requests")
    files = [
        ("PKG-INFO", meta),
        ("pyproject.toml", f'[project]\nname = "{PROJECT}"\nversion = "{version}"\n'.encode()),
        (f"src/{pkg}/__init__.py", f'__version__ = "{version}"\n'.encode() + py_source(rng, 400).encode()),
    ]
    return targz(root, files)


def targz(root, files):
    return make_tarball(files, root, TAR_MTIME)


def gen_pypi(reg, upstream, releases, wheel_kb, seed):
    rng = random.Random(f"{seed}-{PROJECT}")
    pkg = PROJECT.replace("-", "_")
    versions = versions_like_requests(releases)
    files_dir = os.path.join(reg, "packages", PROJECT)
    entries = []
    t = EPOCH
    bench_wheel = None
    for i, v in enumerate(versions):
        t = t + dt.timedelta(days=rng.randint(12, 30), seconds=rng.randint(0, 86399), microseconds=rng.randint(0, 999999))
        newest = i == len(versions) - 1
        wheel_name = f"{pkg}-{v}-py3-none-any.whl"
        wheel, meta = make_wheel(v, rng, wheel_kb * 1000 if newest else rng.randint(2_000, 6_000))
        write(os.path.join(files_dir, wheel_name), wheel)
        write(os.path.join(files_dir, wheel_name + ".metadata"), meta)
        sdist_name = f"{pkg}-{v}.tar.gz"
        sdist = make_sdist(v, rng)
        write(os.path.join(files_dir, sdist_name), sdist)
        for name, data, core in ((wheel_name, wheel, meta), (sdist_name, sdist, None)):
            e = {
                "filename": name,
                "url": f"{upstream}/packages/{PROJECT}/{name}",
                "hashes": {"sha256": sha256(data)},
                "requires-python": ">=3.8",
                "size": len(data),
                "upload-time": iso_pypi(t + dt.timedelta(seconds=0 if core else 7)),
                "yanked": False,
            }
            if core is not None:
                # PyPI lists both spellings (PEP 714)
                e["core-metadata"] = {"sha256": sha256(core)}
                e["data-dist-info-metadata"] = {"sha256": sha256(core)}
            entries.append(e)
        if newest:
            bench_wheel = (wheel_name, len(wheel), sha256(wheel), len(meta), sha256(meta))

    # PEP 691 JSON, api-version 1.1 (adds `versions` and `size`)
    doc = {
        "meta": {"api-version": "1.1"},
        "name": PROJECT,
        "versions": versions,
        "files": entries,
    }
    page_dir = os.path.join(reg, "simple", PROJECT)
    json_page = json.dumps(doc, separators=(",", ":")).encode()
    write(os.path.join(page_dir, "index.json"), json_page)

    # PEP 503 HTML, the way PyPI writes it
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta name="pypi:repository-version" content="1.1">',
        f"    <title>Links for {PROJECT}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {PROJECT}</h1>",
    ]
    for e in entries:
        attrs = f'href="{html.escape(e["url"])}#sha256={e["hashes"]["sha256"]}"'
        attrs += f' data-requires-python="{html.escape(e["requires-python"])}"'
        if "core-metadata" in e:
            h = e["core-metadata"]["sha256"]
            attrs += f' data-dist-info-metadata="sha256={h}" data-core-metadata="sha256={h}"'
        lines.append(f"    <a {attrs}>{e['filename']}</a><br />")
    lines += ["  </body>", "</html>", f"<!--SERIAL {10_000_000 + releases}-->", ""]
    html_page = "\n".join(lines).encode()
    write(os.path.join(page_dir, "index.html"), html_page)

    # the root listing
    root_json = {"meta": {"api-version": "1.1"}, "projects": [{"name": PROJECT}]}
    write(os.path.join(reg, "simple", "index.json"), json.dumps(root_json).encode())
    root_html = (
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n"
        "    <title>Simple index</title>\n  </head>\n  <body>\n"
        f'    <a href="/simple/{PROJECT}/">{PROJECT}</a>\n  </body>\n</html>\n'
    )
    write(os.path.join(reg, "simple", "index.html"), root_html.encode())

    return {
        "project": PROJECT,
        "releases": len(versions),
        "files": len(entries),
        "simple_path": f"/simple/{PROJECT}/",
        "simple_json_bytes": len(json_page),
        "simple_html_bytes": len(html_page),
        "wheel": bench_wheel[0],
        "wheel_path": f"/packages/{PROJECT}/{bench_wheel[0]}",
        "wheel_bytes": bench_wheel[1],
        "wheel_sha256": bench_wheel[2],
        "metadata_bytes": bench_wheel[3],
        "metadata_sha256": bench_wheel[4],
    }


# ------------------------------------------------------------------------------------ crates


def index_prefix(name):
    n = name.lower()
    if len(n) <= 2:
        return str(len(n))
    if len(n) == 3:
        return f"3/{n[0]}"
    return f"{n[:2]}/{n[2:4]}"


def crate_versions(n):
    out = []
    for major, minors, patches in ((0, 10, 5), (1, 20, 6)):
        for minor in range(minors):
            for patch in range(patches):
                out.append(f"{major}.{minor}.{patch}")
    return out[:n]


def make_crate(version, rng, target_bytes):
    root = f"{CRATE}-{version}"
    cargo_orig = (
        "[package]\n"
        f'name = "{CRATE}"\n'
        f'version = "{version}"\n'
        'edition = "2021"\n'
        'rust-version = "1.60"\n'
        'description = "moat benchmark fixture crate"\n'
        'license = "MIT OR Apache-2.0"\n'
        'repository = "https://example.invalid/moatbench/widgets"\n\n'
        "[dependencies]\n"
        'serde = { version = "1", optional = true }\n\n'
        "[features]\n"
        'default = ["std"]\n'
        "std = []\n"
    )
    cargo = "# THIS FILE IS AUTOMATICALLY GENERATED BY CARGO\n#\n# (moat benchmark fixture)\n\n" + cargo_orig

    def build(src):
        return targz(
            root,
            [
                (".cargo_vcs_info.json", b'{\n  "git": {\n    "sha1": "' + rng.randbytes(20).hex().encode() + b'"\n  },\n  "path_in_vcs": ""\n}'),
                ("Cargo.toml", cargo.encode()),
                ("Cargo.toml.orig", cargo_orig.encode()),
                ("README.md", f"# {CRATE}\n\nmoat benchmark fixture crate.\n".encode()),
                ("src/lib.rs", src.encode()),
            ],
        )

    src = "//! moat benchmark fixture crate.\n#![no_std]\n\n" + rs_source(rng, 800)
    data = build(src)
    while len(data) < target_bytes:
        src += rs_source(rng, max(800, min(16_000, int((target_bytes - len(data)) * 3.0))))
        data = build(src)
    return data


def gen_crates(reg, upstream, n_versions, crate_kb, seed):
    rng = random.Random(f"{seed}-{CRATE}")
    index_dir = os.path.join(reg, "crates", "index")
    write(os.path.join(index_dir, "config.json"), json.dumps({"dl": f"{upstream}/crates/dl"}).encode())
    versions = crate_versions(n_versions)
    lines = []
    t = EPOCH + dt.timedelta(days=400)
    bench = None
    for i, v in enumerate(versions):
        t = t + dt.timedelta(days=rng.randint(10, 25), seconds=rng.randint(0, 86399))
        newest = i == len(versions) - 1
        data = make_crate(v, rng, crate_kb * 1000 if newest else rng.randint(1_500, 4_000))
        write(os.path.join(reg, "crates", "dl", CRATE, v, "download"), data)
        deps = [
            {"name": "serde", "req": "^1", "features": [], "optional": True, "default_features": True, "target": None, "kind": "normal"},
            {"name": "moatbench-widgets-core", "req": f"^{v.rsplit('.', 1)[0]}", "features": [], "optional": False, "default_features": True, "target": None, "kind": "normal"},
        ]
        line = {
            "name": CRATE,
            "vers": v,
            "deps": deps,
            "cksum": sha256(data),
            "features": {"default": ["std"], "std": []},
            "yanked": False,
            "links": None,
            "v": 2,
            "features2": {"serde": ["dep:serde"]},
            "rust_version": "1.60",
            "pubtime": iso_crates(t),
        }
        lines.append(json.dumps(line, separators=(",", ":")))
        if newest:
            bench = (v, len(data), sha256(data))
    body = ("\n".join(lines) + "\n").encode()
    index_path = f"{index_prefix(CRATE)}/{CRATE}"
    write(os.path.join(index_dir, index_path), body)
    return {
        "crate": CRATE,
        "versions": len(versions),
        "index_path": f"/crates/index/{index_path}",
        "index_rel": index_path,
        "index_bytes": len(body),
        "crate_version": bench[0],
        "crate_path": f"/crates/dl/{CRATE}/{bench[0]}/download",
        "crate_bytes": bench[1],
        "crate_sha256": bench[2],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (registry/ goes under it)")
    ap.add_argument("--upstream", required=True, help="base URL the file and dl URLs point at, e.g. http://127.0.0.1:18080")
    ap.add_argument("--releases", type=int, default=150, help="PyPI releases (a wheel and an sdist each) [150]")
    ap.add_argument("--wheel-kb", type=int, default=60, help="size of the benchmarked (newest) wheel in KB [60]")
    ap.add_argument("--crate-versions", type=int, default=100, help="versions of the crate [100]")
    ap.add_argument("--crate-kb", type=int, default=50, help="size of the benchmarked (newest) .crate in KB [50]")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    upstream = args.upstream.rstrip("/")
    reg = os.path.join(args.out, "registry")
    os.makedirs(reg, exist_ok=True)
    info = {
        "upstream": upstream,
        "pypi": gen_pypi(reg, upstream, args.releases, args.wheel_kb, args.seed),
        "crates": gen_crates(reg, upstream, args.crate_versions, args.crate_kb, args.seed),
    }
    with open(os.path.join(args.out, "fixture.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    json.dump(info, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
