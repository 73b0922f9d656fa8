#!/usr/bin/env bash
# deploy/kubernetes (the base and the example) rendered by kubectl's kustomize and validated by
# the Kubernetes testbed's kube-apiserver: a server-side dry run with strict field validation,
# so an unknown field, a wrong type, a bad probe or RBAC rule fails here. The namespaces are
# applied for real first (objects cannot be dry-run into a namespace that does not exist).
# Run by `make test` after the testbed is started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kubectl() { "$root/tests/testbed/kubernetes.sh" kubectl "$@"; }
for dir in deploy/kubernetes/base deploy/kubernetes/example; do
  rendered=$(kubectl kustomize "$root/$dir")
  namespaces=$(kubectl apply --dry-run=client -f - -o jsonpath='{range .items[?(@.kind=="Namespace")]}{.metadata.name}{" "}{end}' <<<"$rendered")
  for ns in $namespaces; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  done
  kubectl apply --dry-run=server --validate=strict -f - <<<"$rendered" >/dev/null
  echo "deploy.sh: $dir: $(grep -c '^kind:' <<<"$rendered") objects pass the API server's validation"
done
