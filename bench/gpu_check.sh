#!/usr/bin/env bash
exec bash "$(dirname "$0")/gpu/check.sh" "$@" # the script is bench/gpu/check.sh; this is the path people run
