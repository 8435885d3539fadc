#!/usr/bin/env bash
# The machine's I/O floor for a quantize run, measured with plain tools (issue: quantize against
# the floor). For MODEL_DIR's safetensors (the input) and OUT_GB of output:
#   read cold   dd with O_DIRECT (bypasses the page cache, as a first read after boot does)
#   read warm   cat of the files once to fill the cache, then again, timed
#   write       dd of OUT_GB from /dev/zero into WORK_DIR, buffered (what gemma4q-quantize does:
#               it does not fsync) and then with conv=fdatasync (down to the disk)
#   sha256      sha256sum of one input file (one core), for the manifest's hashing cost
# Prints one line each: seconds and GB/s. Usage: scripts/bench/io_floor.sh MODEL_DIR WORK_DIR OUT_GB
set -euo pipefail
model=${1:?usage: io_floor.sh MODEL_DIR WORK_DIR OUT_GB}
work=${2:?work dir} out_gb=${3:?output GB}
mkdir -p "$work"
files=("$model"/*.safetensors)
bytes=$(cat "${files[@]}" | wc -c)
now() { date +%s.%N; }
line() { # WHAT BYTES T0 T1
    python3 -c 'import sys; w, b, a, z = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]); print("io %-28s %7.2f GB in %6.2f s = %5.2f GB/s" % (w, b / 1e9, z - a, b / 1e9 / (z - a)))' "$@"
}
t0=$(now)
for f in "${files[@]}"; do dd if="$f" of=/dev/null bs=64M iflag=direct status=none; done
line "read cold (O_DIRECT)" "$bytes" "$t0" "$(now)"
cat "${files[@]}" >/dev/null
t0=$(now)
cat "${files[@]}" >/dev/null
line "read warm (page cache)" "$bytes" "$t0" "$(now)"
count=$(python3 -c "print(int($out_gb * 1e9 / (64 << 20)))")
wb=$((count * (64 << 20)))
rm -f "$work/io_floor.bin"
t0=$(now)
dd if=/dev/zero of="$work/io_floor.bin" bs=64M count="$count" status=none
line "write buffered" "$wb" "$t0" "$(now)"
rm -f "$work/io_floor.bin"
t0=$(now)
dd if=/dev/zero of="$work/io_floor.bin" bs=64M count="$count" conv=fdatasync status=none
line "write + fdatasync" "$wb" "$t0" "$(now)"
rm -f "$work/io_floor.bin"
t0=$(now)
sha256sum "${files[0]}" >/dev/null
line "sha256sum (1 core)" "$(stat -c %s "${files[0]}")" "$t0" "$(now)"
