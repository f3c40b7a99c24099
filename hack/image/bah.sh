#!/usr/bin/env bash
# buildah on the project's image storage (see lib.sh), e.g.:
#   hack/image/bah.sh images
#   hack/image/bah.sh push localhost/akua-operator:dev docker-archive:/tmp/akua-operator.tar
set -euo pipefail
# shellcheck source=hack/image/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
bah "$@"
