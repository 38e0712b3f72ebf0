#!/bin/sh
# Renders the edge's nginx.conf from the environment, checks it and the certificate, then runs nginx in front.
set -eu
: "${VOICEGEN_SERVER_NAME:?set VOICEGEN_SERVER_NAME: the host name clients use (the certificate's name)}"
export VOICEGEN_SERVER_NAME
export VOICEGEN_UPSTREAM="${VOICEGEN_UPSTREAM:-app:7860}"
export VOICEGEN_EDGE_RATE_PER_S="${VOICEGEN_EDGE_RATE_PER_S:-10}"
export VOICEGEN_EDGE_BURST="${VOICEGEN_EDGE_BURST:-60}"
# The app's max_upload_mb, plus 1 MB for the multipart form around the file.
export VOICEGEN_EDGE_BODY_MB=$(( ${VOICEGEN_MAX_UPLOAD_MB:-200} + 1 ))
for file in /etc/nginx/certs/fullchain.pem /etc/nginx/certs/privkey.pem; do
  if [ ! -r "$file" ]; then
    echo "voicegen-edge: $file is missing: mount the folder with your certificate (fullchain.pem, privkey.pem) on /etc/nginx/certs" >&2
    exit 1
  fi
done
envsubst '${VOICEGEN_SERVER_NAME} ${VOICEGEN_UPSTREAM} ${VOICEGEN_EDGE_RATE_PER_S} ${VOICEGEN_EDGE_BURST} ${VOICEGEN_EDGE_BODY_MB}' \
  < /etc/nginx/voicegen.conf.template > /etc/nginx/nginx.conf
nginx -t -q
exec nginx -g 'daemon off;'
