set -eu
case "$1-$2" in
  debug-small|debug-full|release-small|release-full) echo "built $1 with $2" ;;
  *) echo "unknown build $1-$2" >&2; exit 1 ;;
esac
