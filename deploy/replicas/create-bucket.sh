#!/bin/sh
# One-shot set-up of deploy/replicas/compose.yaml: creamery's bucket in MinIO, and a user for
# creamery whose policy (bucket-policy.json) allows that bucket only. Safe to run again.
set -eu

mc alias set store http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "store/$CREAMERY_BUCKET"
sed "s/BUCKET_NAME/$CREAMERY_BUCKET/g" /setup/bucket-policy.json > /tmp/creamery-policy.json
mc admin policy create store creamery /tmp/creamery-policy.json
mc admin user add store "$CREAMERY_S3_ACCESS_KEY" "$CREAMERY_S3_SECRET_KEY"
# Attaching twice is an error in mc: a second run finds it attached already.
mc admin policy attach store creamery --user "$CREAMERY_S3_ACCESS_KEY" || true
echo "bucket $CREAMERY_BUCKET ready for $CREAMERY_S3_ACCESS_KEY"
