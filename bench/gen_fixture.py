#!/usr/bin/env python3
"""Generate a static npm fixture registry for the gate benchmark (bench/run).

Layout under OUT/registry (served by nginx with `try_files $uri/index.json $uri`):

    <name>/index.json                 the full packument, served at /<name>
    <name>/-/<name>-<version>.tgz     the tarballs, served at /<name>/-/<name>-<version>.tgz

and under OUT/project a package.json that depends (directly and transitively) on every
small package, so `npm install` through the fixture produces a ~400-package lockfile.

Everything is deterministic for a given seed and upstream URL: real gzip'd tarballs
(`package/package.json`, `package/index.js`, ...), sha512 `dist.integrity`, sha1 `shasum`,
publish times years in the past (the gate's default policy refuses versions younger than
three days), and names with a unique prefix (`moatbench-`) so no typosquat rule fires.
"""

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

WORDS = (
    "value options result buffer stream parse format config module export function return "
    "const let await async promise error callback handler request response header status "
    "cache index length object array string number boolean undefined null token range "
    "version resolve reject listener emit event timeout interval encode decode path file"
).split()

MTIME = 499162500  # npm's fixed tarball mtime (1985-10-26T08:15:00Z)
EPOCH = dt.datetime(2019, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def source_text(rng, size):
    """Plausible JS-looking text of about `size` bytes (compresses like real code)."""
    out, n, i = [], 0, 0
    while n < size:
        w = rng.sample(WORDS, 4)
        line = f"function {w[0]}_{i}({w[1]}, {w[2]}) {{ return {w[1]}.{w[3]}({w[2]} + {rng.randint(0, 9999)}); }}\n"
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out)


def make_tarball(files, root="package", mtime=MTIME):
    """A gzip'd tar with entries under root/, byte-for-byte deterministic."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(raw.getvalue())
    return gz.getvalue()


def write_version(reg_dir, upstream, name, manifest, files):
    """Write the tarball of one version and return its dist block."""
    pj = json.dumps(manifest, indent=2).encode() + b"\n"
    all_files = [("package.json", pj)] + files
    tgz = make_tarball(all_files)
    fname = f"{name}-{manifest['version']}.tgz"
    tdir = os.path.join(reg_dir, name, "-")
    os.makedirs(tdir, exist_ok=True)
    with open(os.path.join(tdir, fname), "wb") as f:
        f.write(tgz)
    return {
        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
        "shasum": hashlib.sha1(tgz).hexdigest(),
        "tarball": f"{upstream}/{name}/-/{fname}",
        "fileCount": len(all_files),
        "unpackedSize": sum(len(d) for _, d in all_files),
    }, len(tgz)


def write_packument(reg_dir, name, doc):
    path = os.path.join(reg_dir, name, "index.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = json.dumps(doc, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def people(rng, n):
    return [{"name": f"maint{rng.randint(1, 99)}", "email": f"maint{rng.randint(1, 99)}@example.com"} for _ in range(n)]


def packument(name, versions, times, description, readme, rng):
    latest = list(versions)[-1]
    t = {"created": iso(times[0]), "modified": iso(times[-1])}
    for v, when in zip(versions, times):
        t[v] = iso(when)
    return {
        "_id": name,
        "_rev": f"{len(versions)}-{hashlib.md5(name.encode()).hexdigest()}",
        "name": name,
        "description": description,
        "dist-tags": {"latest": latest},
        "versions": versions,
        "time": t,
        "maintainers": people(rng, 2),
        "author": {"name": "Moat Bench", "email": "bench@example.com"},
        "repository": {"type": "git", "url": f"git+https://github.com/moatbench/{name}.git"},
        "homepage": f"https://github.com/moatbench/{name}#readme",
        "bugs": {"url": f"https://github.com/moatbench/{name}/issues"},
        "license": "MIT",
        "keywords": ["moatbench", "fixture"],
        "readme": readme,
        "readmeFilename": "README.md",
        "users": {},
    }


def version_manifest(name, version, description, deps, rng, big=False):
    m = {
        "name": name,
        "version": version,
        "description": description,
        "main": "index.js",
        "license": "MIT",
        "author": {"name": "Moat Bench", "email": "bench@example.com"},
        "repository": {"type": "git", "url": f"git+https://github.com/moatbench/{name}.git"},
        "homepage": f"https://github.com/moatbench/{name}#readme",
        "bugs": {"url": f"https://github.com/moatbench/{name}/issues"},
        "engines": {"node": ">=14"},
        "dependencies": deps,
    }
    if big:
        m.update(
            {
                "types": "lib/index.d.ts",
                "main": "lib/index.js",
                "files": ["lib/", "README.md", "LICENSE"],
                "scripts": {
                    "build": "tsc -p tsconfig.build.json",
                    "test": "jest --coverage --runInBand",
                    "lint": "eslint --ext .ts src test",
                    "prepublishOnly": "npm run build && npm test",
                },
                "keywords": ["moatbench", "fixture", "sdk", "client", "large", "packument"],
                "devDependencies": {
                    f"moatbench-dev-{w}": f"^{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
                    for w in ("typescript", "jest", "eslint", "prettier", "rollup", "types-node", "ts-jest", "husky")
                },
            }
        )
    return m


def registry_fields(name, version, dist, rng, big=False):
    """Fields the registry adds to a version document (not in the tarball's package.json)."""
    f = {
        "_id": f"{name}@{version}",
        "gitHead": rng.randbytes(20).hex(),
        "_nodeVersion": f"{rng.choice([16, 18, 20])}.{rng.randint(0, 19)}.{rng.randint(0, 9)}",
        "_npmVersion": f"{rng.choice([8, 9, 10])}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "dist": dist,
        "_npmUser": {"name": "maint1", "email": "maint1@example.com"},
        "directories": {},
        "maintainers": people(rng, 2),
        "_hasShrinkwrap": False,
    }
    if big:
        f["_npmOperationalInternal"] = {
            "host": "s3://npm-registry-packages",
            "tmp": f"tmp/{name}_{version}_{rng.randint(10**12, 10**13)}_0.{rng.randint(10**15, 10**16)}",
        }
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (registry/ and project/ go under it)")
    ap.add_argument("--upstream", required=True, help="base URL the tarball URLs point at, e.g. http://127.0.0.1:18080")
    ap.add_argument("--small", type=int, default=400, help="number of small packages [400]")
    ap.add_argument("--big-kb", type=int, default=750, help="size of the big packument in KB [750]")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    upstream = args.upstream.rstrip("/")
    rng = random.Random(args.seed)
    reg = os.path.join(args.out, "registry")
    os.makedirs(reg, exist_ok=True)

    # ---- small packages: a DAG so that every package is reachable from the project ----
    n = args.small
    names = [f"moatbench-pkg-{i:04d}" for i in range(1, n + 1)]
    direct = max(1, n // 8)  # the project depends on the first n/8 directly
    deps = {i: {} for i in range(n)}
    for j in range(direct, n):  # each later package gets one parent before it ...
        deps[rng.randrange(0, j)][j] = "^1.0.0"
    for i in range(n):  # ... plus a few extra edges forward
        for _ in range(rng.randint(0, 3)):
            j = rng.randrange(i + 1, n + 1)
            if j < n:
                deps[i].setdefault(j, "^1.0.0")
    # about one edge in 25 pins an older release, so the tree has some nested duplicates
    for i in range(n):
        for j in list(deps[i]):
            if rng.random() < 0.04:
                deps[i][j] = "~1.0.0"

    small_versions = ["1.0.0", "1.1.0", "1.2.0"]
    bench_tarball = None
    total_tgz = 0
    for i, name in enumerate(names):
        desc = f"moat benchmark fixture package {i + 1}"
        prng = random.Random(f"{args.seed}-{name}")
        start = EPOCH + dt.timedelta(days=prng.randint(0, 900))
        times = [start + dt.timedelta(days=30 * k, minutes=prng.randint(0, 600)) for k in range(len(small_versions))]
        vdocs = {}
        for k, v in enumerate(small_versions):
            # older releases depend on fewer packages, like real ones
            d = {names[j]: r for j, r in sorted(deps[i].items()) if k == len(small_versions) - 1 or j % 3 != k}
            if v != small_versions[-1]:
                d = {nm: "^1.0.0" for nm in d}
            m = version_manifest(name, v, desc, d, prng)
            size = 48_000 if i == 0 else prng.randint(1_000, 24_000)
            files = [
                ("index.js", source_text(prng, size).encode()),
                ("README.md", f"# {name}\n\n{desc}.\n".encode()),
                ("LICENSE", b"MIT License\n\nCopyright (c) moat bench\n"),
            ]
            dist, tsize = write_version(reg, upstream, name, m, files)
            total_tgz += tsize
            if i == 0 and v == small_versions[-1]:
                bench_tarball = (f"/{name}/-/{name}-{v}.tgz", tsize)
            m.update(registry_fields(name, v, dist, prng))
            vdocs[v] = m
        doc = packument(name, vdocs, times, desc, f"# {name}\n\n{desc}.\n", prng)
        write_packument(reg, name, doc)

    # ---- the big package: add versions until the packument reaches --big-kb ----
    big = "moatbench-big"
    brng = random.Random(f"{args.seed}-{big}")
    desc = "moat benchmark fixture: a package with a very large packument (many versions)"
    readme = f"# {big}\n\n" + source_text(brng, 6_000)
    target = args.big_kb * 1000
    vdocs, times = {}, []
    t = EPOCH - dt.timedelta(days=800)
    seq = ((ma, mi, pa) for ma in range(0, 100) for mi in range(0, 10) for pa in range(0, 5))
    approx = 0
    for ma, mi, pa in seq:
        v = f"{ma}.{mi}.{pa}"
        d = {names[j]: "^1.0.0" for j in brng.sample(range(n), min(n, 6))}
        m = version_manifest(big, v, desc, d, brng, big=True)
        files = [
            ("lib/index.js", source_text(brng, 600).encode()),
            ("lib/index.d.ts", b"export declare function main(): void;\n"),
            ("README.md", f"# {big}\n".encode()),
            ("LICENSE", b"MIT License\n"),
        ]
        dist, tsize = write_version(reg, upstream, big, m, files)
        total_tgz += tsize
        m.update(registry_fields(big, v, dist, brng, big=True))
        vdocs[v] = m
        t = t + dt.timedelta(days=2, minutes=brng.randint(0, 900))
        times.append(t)
        approx += len(json.dumps(m, separators=(",", ":"))) + 40
        if approx >= target - 20_000:
            doc = packument(big, vdocs, times, desc, readme, brng)
            if len(json.dumps(doc, separators=(",", ":"))) >= target:
                break
    big_size = write_packument(reg, big, packument(big, vdocs, times, desc, readme, brng))

    # ---- the project ----
    proj = os.path.join(args.out, "project")
    os.makedirs(proj, exist_ok=True)
    with open(os.path.join(proj, "package.json"), "w") as f:
        json.dump(
            {
                "name": "moatbench-project",
                "version": "1.0.0",
                "private": True,
                "description": "npm ci benchmark project for moat",
                "dependencies": {names[i]: "^1.0.0" for i in range(direct)},
            },
            f,
            indent=2,
        )
        f.write("\n")

    info = {
        "upstream": upstream,
        "small_packages": n,
        "direct_dependencies": direct,
        "big_package": big,
        "big_versions": len(vdocs),
        "big_packument_bytes": big_size,
        "bench_packument": f"/{big}",
        "bench_tarball": bench_tarball[0],
        "bench_tarball_bytes": bench_tarball[1],
        "tarballs": n * len(small_versions) + len(vdocs),
        "tarball_bytes_total": total_tgz,
    }
    with open(os.path.join(args.out, "fixture.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    json.dump(info, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
