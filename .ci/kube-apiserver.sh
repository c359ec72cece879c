#!/usr/bin/env bash
# Build a real kube-apiserver (v1.20.2) and get etcd, from Debian's mirror only, for the tests of
# in-use protection (tests/test_inuse_cluster.py).
#
# Usage: .ci/kube-apiserver.sh OUTDIR   ->  OUTDIR/bin/kube-apiserver, OUTDIR/bin/etcd
#
# Why this way (measured on these 2-core machines, see docs/in-use.md): no kube-apiserver binary is
# packaged in Debian, on PyPI or npm; kind/k3d need Docker; the Go module proxy is unreachable.
# Debian bullseye's `kubernetes` source package is the upstream v1.20.2 tarball with vendor/, and it
# builds offline with bullseye's golang-1.15: about 3 minutes, 1.5 GB peak. etcd is Debian's
# etcd-server. A second run with the binaries in OUTDIR does nothing. Any failure (a mirror that
# moved the tarball, a changed checksum) fails loudly: the tests must not silently lose their server.
set -euo pipefail

KUBERNETES_VERSION=1.20.2
TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
TARBALL_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc

out=$(mkdir -p "$1" && cd "$1" && pwd)
if [ -x "$out/bin/kube-apiserver" ] && [ -x "$out/bin/etcd" ] \
  && "$out/bin/kube-apiserver" --version 2> /dev/null | grep -q "v$KUBERNETES_VERSION"; then
  echo "kube-apiserver v$KUBERNETES_VERSION and etcd already in $out/bin"
  exit 0
fi
work="$out/work"
rm -rf "$work"
mkdir -p "$work"/{apt/lists/partial,apt/cache/archives/partial,debs} "$out/bin"
cd "$work"
ts() { echo "[$(date +%T)] $*"; }

# rsync runs inside the Kubernetes build; Debian's package brings the library it links (libpopt).
command -v rsync > /dev/null || { apt-get update -qq > /dev/null && apt-get install -y -qq rsync > /dev/null; }

mirror=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2> /dev/null | cut -d' ' -f2 || true)
mirror=${mirror:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2> /dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
cat > apt/bullseye.sources << SOURCES
Types: deb deb-src
URIs: $mirror
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# bullseye's package lists kept here, apart from the machine's own: nothing else is installed from them.
private=(-o APT::Sandbox::User=root -o "Dir::Etc::sourcelist=$work/apt/bullseye.sources"
  -o Dir::Etc::sourceparts=/nonexistent -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache")
ts "apt-get update (bullseye lists, private)"
apt-get "${private[@]}" update -qq
ts "download golang-1.15, etcd-server, the kubernetes source"
(cd debs && apt-get "${private[@]}" download -qq golang-1.15-go golang-1.15-src)
(cd debs && apt-get -o APT::Sandbox::User=root download -qq etcd-server)
# The .dsc may answer 404 on the mirror; the orig tarball (upstream, vendor/ included) is all we use.
(cd debs && apt-get "${private[@]}" source --download-only -qq "kubernetes=1.20.5+really1.20.2-1" 2> /dev/null || true)
echo "$TARBALL_SHA256  debs/$TARBALL" | sha256sum -c -

ts "extract"
for deb in debs/golang-1.15-*.deb; do dpkg -x "$deb" tools; done
dpkg -x debs/etcd-server_*.deb etcd-package
tar xzf "debs/$TARBALL"

ts "build kube-apiserver (go 1.15, vendored modules, offline)"
export GOROOT="$work/tools/usr/lib/go-1.15" GOFLAGS=-mod=vendor GOPROXY=off GO111MODULE=on
export PATH="$GOROOT/bin:$PATH"
if ! (cd "kubernetes-$KUBERNETES_VERSION" && make WHAT=cmd/kube-apiserver > "$work/make.log" 2>&1); then
  tail -30 "$work/make.log" >&2
  echo "kube-apiserver build failed; the whole log is $work/make.log" >&2
  exit 1
fi
cp "kubernetes-$KUBERNETES_VERSION/_output/bin/kube-apiserver" "$out/bin/"
cp etcd-package/usr/bin/etcd "$out/bin/"
cd "$out"
rm -rf "$work"  # 2 GB of sources and build cache
ts "done: $("$out/bin/kube-apiserver" --version), $("$out/bin/etcd" --version | head -1)"
