#!/bin/sh
# api-symbols.sh — m4/hearth-api.m4 (what configure checks of each library)
# lists every function and constant the sources use (TAP).
exec "${PYTHON3:-python3}" "${HEARTH_SRCDIR:-.}/tools/api-symbols" --tap
