"""Independent reader for the lvm crate's tests: lists the LVM volumes that dissect.vmfs sees on
the given devices and reads byte ranges of each volume.

usage: dissect_reader.py OUT_DIR RANGES DEVICE...
  RANGES is a comma-separated list of OFFSET:LENGTH (bytes) to read from every volume; the bytes
  of range k of volume v are written to OUT_DIR/v{v}_r{k}.bin.
Prints one JSON object: {"volumes": [{"name", "size", "uuid", "valid", "device_names",
"device_uuids"}]}.
"""

import json
import os
import sys

from dissect.vmfs.lvm import LVM


def main() -> None:
    out_dir, ranges, devices = sys.argv[1], sys.argv[2], sys.argv[3:]
    spans = [tuple(int(x) for x in r.split(":")) for r in ranges.split(",") if r]
    handles = [open(path, "rb") for path in devices]
    lvm = LVM(handles)
    result = []
    for v, volume in enumerate(lvm.volumes):
        entry = {
            "name": volume.name,
            "size": volume.size,
            "uuid": volume.uuid,
            "valid": volume.is_valid(),
            "device_names": volume.device_names,
            "device_uuids": [d.uuid for d in volume.devices],
        }
        if volume.is_valid():
            stream = volume.open()
            for k, (offset, length) in enumerate(spans):
                stream.seek(offset)
                data = stream.read(length)
                with open(os.path.join(out_dir, f"v{v}_r{k}.bin"), "wb") as f:
                    f.write(data)
        result.append(entry)
    print(json.dumps({"volumes": result}))


if __name__ == "__main__":
    main()
