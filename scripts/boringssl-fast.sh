#!/bin/bash
# scripts/boringssl-fast.sh OUTDIR
#
# Rebuild Debian's own BoringSSL (source package android-platform-external-boringssl,
# the same version as the installed android-libboringssl-dev) exactly the way
# debian/rules builds it, except WITHOUT -DOPENSSL_SMALL. Debian's OPENSSL_SMALL
# build drops the x86_64 P-256 assembly path (p256-nistz) and the large
# precomputed curve tables, which makes P-256/X25519 roughly 3x slower.
#
# Result:
#   OUTDIR/include/openssl/*.h
#   OUTDIR/lib/libcrypto.so.0, libssl.so.0 (Debian's sonames) + libcrypto.so, libssl.so
#   OUTDIR/build.log          everything the build printed
#   OUTDIR/.stamp             present => already built, the script exits 0 at once
#
# Used by meson.build for -Dboringssl=fast (run at configure time). Needs root
# (or password-less sudo) the first time: it installs build dependencies with
# apt-get and temporarily adds a deb-src entry (removed again on exit).
#
# Environment: BORINGSSL_FAST_JOBS (default: nproc), BORINGSSL_FAST_VERSION
# (default: the installed android-libboringssl-dev version, else 13.0.0+r24-2),
# BORINGSSL_FAST_KEEP_SRC=1 to keep the extracted source tree in OUTDIR/src.
set -euo pipefail

PKG=android-platform-external-boringssl
DEFAULT_VERSION=13.0.0+r24-2
SRC_LIST=/etc/apt/sources.list.d/stampede-boringssl-src.sources
LOCK=/run/lock/stampede-boringssl-fast.lock

say() { echo "boringssl-fast: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUTDIR=$(realpath -m -- "$1")
STAMP="$OUTDIR/.stamp"
LOG="$OUTDIR/build.log"

installed_version() {
    dpkg-query -W -f='${Version}' android-libboringssl-dev 2>/dev/null ||
        dpkg-query -W -f='${Version}' android-libboringssl 2>/dev/null || true
}
VERSION=${BORINGSSL_FAST_VERSION:-$(installed_version)}
VERSION=${VERSION:-$DEFAULT_VERSION}

is_built() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PKG $VERSION no-OPENSSL_SMALL" ] &&
        [ -e "$OUTDIR/lib/libcrypto.so" ] && [ -e "$OUTDIR/lib/libssl.so" ] &&
        [ -f "$OUTDIR/include/openssl/ssl.h" ]
}

# Fast path: already built.
if is_built; then
    exit 0
fi

mkdir -p "$OUTDIR"

# Serialise concurrent runs (two build dirs configured at once share the apt
# source entry and the apt lock).
if [ -w "$(dirname "$LOCK")" ]; then
    exec 9>"$LOCK"
else
    exec 9>"$OUTDIR/.lock"
fi
flock 9
if is_built; then
    exit 0
fi

: >"$LOG"
fail() {
    say "ERROR: $* (full log: $LOG); last lines:"
    tail -n 30 "$LOG" >&2 || true
    exit 1
}
# run DESCRIPTION CMD...: run with all output appended to the log.
run() {
    local what=$1; shift
    echo "+ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 </dev/null || fail "$what failed"
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        die "not built yet and not root: run once as root (or with password-less sudo): $0 $OUTDIR"
    fi
fi

say "building $PKG $VERSION without OPENSSL_SMALL into $OUTDIR (log: $LOG)"

ADDED_LIST=0
cleanup() {
    if [ "$ADDED_LIST" = 1 ]; then
        "${SUDO[@]}" rm -f "$SRC_LIST" || true
        say "removed temporary apt source $SRC_LIST"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        run "apt-get update" "${SUDO[@]}" apt-get update
        APT_UPDATED=1
    fi
}

# 1. Build tools. Debian builds with clang + lld when present (debian/rules);
#    both are in Build-Depends for amd64, so the Debian binary was built with them.
#    dpkg-dev provides apt-get source's unpacker, dpkg-buildflags and make.
NEED=()
for p in dpkg-dev clang lld make; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || NEED+=("$p")
done
if [ ${#NEED[@]} -gt 0 ]; then
    apt_update
    say "installing build dependencies: ${NEED[*]}"
    run "apt-get install ${NEED[*]}" "${SUDO[@]}" apt-get install -y --no-install-recommends "${NEED[@]}"
fi

# 2. Source package. If no deb-src entry provides this exact version, add a
#    temporary one that reuses the machine's Debian mirror URI and Signed-By
#    (apt refuses a second entry for the same URI+suite with a different Signed-By).
have_source() {
    # (no `| grep -q`: with pipefail an early grep exit makes the writer fail)
    local out
    out=$(apt-cache showsrc --only-source "$PKG" 2>/dev/null || true)
    grep -qx "Version: $VERSION" <<<"$out"
}

CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

# Prints the URI on the first line and the Signed-By value (possibly several
# lines: an inline key) on the following lines, for the first enabled "deb"
# entry of suite $CODENAME with component main.
DEB822_AWK='
    function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
            (" " comps " ") ~ / main / && tolower(enabled) != "no" && uris != "") {
            split(uris, u, " "); print u[1]; if (sb != "") print sb; found = 1; exit
        }
        types = uris = suites = comps = sb = enabled = ""; cur = ""
    }
    /^#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]/ { if (cur == "signed-by") sb = sb "\n" $0; next }
    {
        key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val); cur = key
        if (key == "types") types = val; else if (key == "uris") uris = val
        else if (key == "suites") suites = val; else if (key == "components") comps = val
        else if (key == "signed-by") sb = val; else if (key == "enabled") enabled = val
    }
    END { if (!found) flush() }
'
find_mirror() {
    local f out
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        [ "$f" = "$SRC_LIST" ] && continue
        out=$(awk -v suite="$CODENAME" "$DEB822_AWK" "$f")
        if [ -n "$out" ]; then printf '%s\n' "$out"; return 0; fi
    done
    # One-line format: deb [opt=val ...] URI SUITE COMPONENT...
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        out=$(awk -v suite="$CODENAME" '
            $1 != "deb" { next }
            {
                opts = ""; i = 2
                if ($2 ~ /^\[/) { while (i <= NF) { opts = opts " " $i; if ($i ~ /\]$/) { i++; break } i++ } }
                uri = $i; s = $(i + 1); hasmain = 0
                for (j = i + 2; j <= NF; j++) if ($j == "main") hasmain = 1
                if (s != suite || !hasmain) next
                print uri
                if (match(opts, /signed-by=[^] ]+/)) print substr(opts, RSTART + 10, RLENGTH - 10)
                exit
            }
        ' "$f")
        if [ -n "$out" ]; then printf '%s\n' "$out"; return 0; fi
    done
    echo "http://deb.debian.org/debian"
}

if ! have_source; then
    mirror=$(find_mirror)
    uri=$(head -n 1 <<<"$mirror")
    signed_by=$(tail -n +2 <<<"$mirror")
    say "adding temporary apt source $SRC_LIST (deb-src $uri $CODENAME main)"
    ADDED_LIST=1
    {
        echo "# Temporary: added by stampede scripts/boringssl-fast.sh, removed when it exits."
        echo "Types: deb-src"
        echo "URIs: $uri"
        echo "Suites: $CODENAME"
        echo "Components: main"
        [ -z "$signed_by" ] || echo "Signed-By: $signed_by"
    } | "${SUDO[@]}" tee "$SRC_LIST" >/dev/null
    APT_UPDATED=0
    apt_update
    have_source || fail "source package $PKG version $VERSION not available from $uri $CODENAME"
fi

SRCROOT="$OUTDIR/src"
UPSTREAM=${VERSION#*:}
UPSTREAM=${UPSTREAM%-*}
SRCDIR="$SRCROOT/$PKG-$UPSTREAM"
if [ ! -f "$SRCDIR/.stampede-unpacked" ]; then
    rm -rf "$SRCROOT"
    mkdir -p "$SRCROOT"
    # apt drops privileges to _apt for downloads when it can write the directory.
    if id _apt >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then chown _apt "$SRCROOT" || true; fi
    say "apt-get source $PKG=$VERSION"
    (cd "$SRCROOT" && run "apt-get source" apt-get source --only-source "$PKG=$VERSION")
    [ -f "$SRCDIR/debian/libcrypto.mk" ] || fail "unexpected source layout: no $SRCDIR/debian/libcrypto.mk"
    touch "$SRCDIR/.stampede-unpacked"
fi

# The flag set is Debian's one (debian/rules) minus -DOPENSSL_SMALL.
grep -q -- '-DOPENSSL_SMALL' "$SRCDIR/debian/rules" ||
    say "note: debian/rules no longer sets -DOPENSSL_SMALL; building it anyway"

# 3. Build, reproducing debian/rules: dpkg-buildflags with the same MAINT
#    options, CC=clang/CXX=clang++ (+ -gdwarf-4), lld, then
#    `make -f debian/libcrypto.mk` and `make -f debian/libssl.mk`
#    (debian/libcrypto.mk adds $(linux_x86_64_sources), the perlasm .S files,
#    for amd64). Flags go through the environment, like dh_auto_build does, so
#    the makefiles' own `CFLAGS += ...` still apply.
JOBS=${BORINGSSL_FAST_JOBS:-$(nproc)}
cd "$SRCDIR"
rm -rf debian/out
DEB_HOST_ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
DEB_HOST_MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
export DEB_HOST_ARCH DEB_HOST_MULTIARCH
export DEB_BUILD_MAINT_OPTIONS="hardening=+all optimize=-lto"
export DEB_CFLAGS_MAINT_APPEND="-fPIC -gdwarf-4"
export DEB_CXXFLAGS_MAINT_APPEND="-fPIC -gdwarf-4"
export DEB_LDFLAGS_MAINT_APPEND="-fPIC -fuse-ld=lld -Wl,--build-id=sha1"
export DEB_CPPFLAGS_MAINT_APPEND="-DNDEBUG -UDEBUG \
  -DBORINGSSL_ANDROID_SYSTEM \
  -DBORINGSSL_IMPLEMENTATION \
  -DBORINGSSL_SHARED_LIBRARY \
  -fmessage-length=0 \
  -fno-exceptions \
  -fno-strict-aliasing \
  -no-canonical-prefixes"
eval "$(dpkg-buildflags --export=sh)"
export CC=clang CXX=clang++
{
    echo "== build environment"
    echo "DEB_HOST_ARCH=$DEB_HOST_ARCH CC=$CC CXX=$CXX JOBS=$JOBS"
    echo "CPPFLAGS=$CPPFLAGS"; echo "CFLAGS=$CFLAGS"; echo "CXXFLAGS=$CXXFLAGS"; echo "LDFLAGS=$LDFLAGS"
} >>"$LOG"

say "compiling libcrypto (make -j$JOBS -f debian/libcrypto.mk; about a minute on 2 cores)"
run "libcrypto build" make -j"$JOBS" -f debian/libcrypto.mk
# Debian links libssl with RPATH /usr/lib/<multiarch>/android, which would let
# the system (OPENSSL_SMALL) libcrypto satisfy libssl's dependency. Put
# $ORIGIN first so libssl picks up the libcrypto next to it. ($$ for make,
# \ for the recipe's shell.)
say "compiling libssl (make -j$JOBS -f debian/libssl.mk)"
LDFLAGS="$LDFLAGS -Wl,-rpath,\\\$\$ORIGIN" run "libssl build" make -j"$JOBS" -f debian/libssl.mk

# 4. Sanity checks: the P-256 nistz256 (x86_64 assembly) EC_METHOD
#    (crypto/fipsmodule/ec/p256-nistz.c) is only compiled without OPENSSL_SMALL.
for l in libcrypto libssl; do
    [ -f "debian/out/$l.so.0" ] || fail "debian/out/$l.so.0 was not produced"
done
if [ "$DEB_HOST_ARCH" = amd64 ]; then
    syms=$(readelf -sW debian/out/libcrypto.so.0)
    grep -q 'EC_GFp_nistz256_method_init' <<<"$syms" ||
        fail "libcrypto has no EC_GFp_nistz256_method: OPENSSL_SMALL still in effect?"
fi
readelf -dW debian/out/libssl.so.0 >>"$LOG" 2>&1 || true

# 5. Install into OUTDIR.
rm -rf "$OUTDIR/lib" "$OUTDIR/include"
mkdir -p "$OUTDIR/lib" "$OUTDIR/include"
cp -a debian/out/libcrypto.so.0 debian/out/libssl.so.0 "$OUTDIR/lib/"
ln -sf libcrypto.so.0 "$OUTDIR/lib/libcrypto.so"
ln -sf libssl.so.0 "$OUTDIR/lib/libssl.so"
cp -a src/include/openssl "$OUTDIR/include/"
cd "$OUTDIR"
if [ "${BORINGSSL_FAST_KEEP_SRC:-0}" != 1 ]; then
    rm -rf "$SRCROOT"
fi
echo "$PKG $VERSION no-OPENSSL_SMALL" >"$STAMP"
say "done: $OUTDIR/lib/libcrypto.so.0 $OUTDIR/lib/libssl.so.0 $OUTDIR/include/openssl"
