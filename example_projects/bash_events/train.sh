#!/usr/bin/env bash
# A non-Python entry point: writes a file in the working directory and logs metrics by
# appending JSON lines to $RUN_PROJECT_EVENTS (no client library needed).
set -euo pipefail
steps="$1"
for ((i = 0; i < steps; i++)); do
  echo "{\"type\": \"metric\", \"key\": \"loss\", \"value\": $((10 - i)), \"step\": $i}" >> "$RUN_PROJECT_EVENTS"
done
echo '{"type": "param", "key": "shell", "value": "bash"}' >> "$RUN_PROJECT_EVENTS"
echo "result after $steps steps" > result.txt
echo "done"
