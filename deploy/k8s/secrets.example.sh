#!/usr/bin/env bash
# Creates fedfaas's secrets from random values, in the namespaces that read them:
#   openfaas-fn  the functions (stack.yml "secrets:"), mounted at /var/openfaas/secrets/<name>
#   fedfaas      the gateway, MinIO and the bucket job
# Secrets: s3-access-key, s3-secret-key, fedfaas-admin-token, fedfaas-internal-token
# (both namespaces) and openfaas-basic-auth (fedfaas; a copy of OpenFaaS's basic-auth
# secret).  fedfaas-internal-token is the gateway's proof to the functions that a
# call comes from it: OpenFaaS does not authenticate /function/<name>, so without it
# anyone reaching the OpenFaaS gateway could read any tenant's data through a function.
#
# Idempotent: a secret that already exists in fedfaas is reused, never rotated
# (rotating s3-* would lock the gateway out of MinIO's data until both restart).
# Values never appear on a command line; they pass through a private temp folder.
# Nothing here is committed: the values exist only in the cluster.
#
# Needs kubectl with access to the cluster and the OpenFaaS chart installed
# (for basic-auth).  With only faas-cli, the function-side equivalent is
#   faas-cli secret create s3-access-key --from-file ./s3-access-key
#   faas-cli secret create fedfaas-internal-token --from-file ./fedfaas-internal-token
set -euo pipefail

FN_NS="${FN_NS:-openfaas-fn}"
APP_NS="${APP_NS:-fedfaas}"
OPENFAAS_NS="${OPENFAAS_NS:-openfaas}"

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

random_hex() {  # random_hex BYTES -> 2*BYTES hex characters
    head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'
}

# existing NAME -> writes the current value from $APP_NS to $work/NAME, or fails
existing() {
    local encoded
    encoded="$(kubectl get secret "$1" -n "$APP_NS" -o "jsonpath={.data.$1}" 2>/dev/null)" || return 1
    [ -n "$encoded" ] || return 1
    printf '%s' "$encoded" | base64 -d > "$work/$1"
}

# put NAMESPACE NAME: create or update secret NAME with key NAME from $work/NAME
put() {
    kubectl create secret generic "$2" -n "$1" --from-file="$2=$work/$2" \
        --dry-run=client -o yaml | kubectl apply -f - > /dev/null
    echo "secret $1/$2 ready"
}

# MinIO: access key 3..20 characters, secret key 8..40 characters.
existing s3-access-key || printf 'fedfaas-%s' "$(random_hex 6)" > "$work/s3-access-key"
existing s3-secret-key || random_hex 20 > "$work/s3-secret-key"
existing fedfaas-admin-token || random_hex 32 > "$work/fedfaas-admin-token"
existing fedfaas-internal-token || random_hex 32 > "$work/fedfaas-internal-token"

for name in s3-access-key s3-secret-key fedfaas-admin-token fedfaas-internal-token; do
    put "$FN_NS" "$name"
    put "$APP_NS" "$name"
done

# The gateway calls /system/* on the OpenFaaS gateway with the same credentials.
if kubectl get secret basic-auth -n "$OPENFAAS_NS" > /dev/null 2>&1; then
    for key in basic-auth-user basic-auth-password; do
        kubectl get secret basic-auth -n "$OPENFAAS_NS" -o "jsonpath={.data.$key}" \
            | base64 -d > "$work/$key"
    done
    kubectl create secret generic openfaas-basic-auth -n "$APP_NS" \
        --from-file="basic-auth-user=$work/basic-auth-user" \
        --from-file="basic-auth-password=$work/basic-auth-password" \
        --dry-run=client -o yaml | kubectl apply -f - > /dev/null
    echo "secret $APP_NS/openfaas-basic-auth ready"
else
    echo "no basic-auth secret in $OPENFAAS_NS yet: install OpenFaaS, then run this again" >&2
fi

echo "operator token: kubectl get secret fedfaas-admin-token -n $APP_NS" \
     "-o jsonpath='{.data.fedfaas-admin-token}' | base64 -d"
