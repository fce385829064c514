"""Read one file of a VMFS volume image with dissect.vmfs and write it to stdout.

Usage: python3 dissect_cat.py IMAGE PATH
The image may start with a single-extent LVM header (read through dissect.vmfs.lvm) or be a
bare VMFS volume.
"""
import shutil
import struct
import sys

from dissect.vmfs import VMFS
from dissect.vmfs.lvm import LVM


def main():
    image, path = sys.argv[1], sys.argv[2]
    fh = open(image, "rb")
    fh.seek(0x100000)
    if struct.unpack("<I", fh.read(4))[0] == 0xC001D00D:
        fh.seek(0)
        volume = LVM(fh).volumes[0].open()
    else:
        volume = fh
    fs = VMFS(volume)
    with fs.get(path).open() as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)


if __name__ == "__main__":
    main()
