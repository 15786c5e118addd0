# daft's safe unzip, run on the head with the cluster's Python: `python - ARCHIVE DEST`.
# Every entry is checked before anything is written: absolute paths, `..`, drive letters and
# symlinks are refused, so nothing can land outside DEST.
import os
import stat
import sys
import zipfile

archive, dest = sys.argv[1], os.path.realpath(sys.argv[2])
with zipfile.ZipFile(archive) as z:
    infos = z.infolist()
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        mode = info.external_attr >> 16
        unsafe = (
            name.startswith("/")
            or "\\" in name
            or ".." in parts
            or (len(name) > 1 and name[1] == ":")
            or stat.S_ISLNK(mode)
        )
        target = os.path.realpath(os.path.join(dest, name))
        if unsafe or not (target == dest or target.startswith(dest + os.sep)):
            print("daft: refusing to unpack %r: it would land outside the job directory" % name, file=sys.stderr)
            sys.exit(3)
    for info in infos:
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
print("daft-unpacked %d" % len(infos))
