#!/usr/bin/env bash
echo "shell script args: $*"
