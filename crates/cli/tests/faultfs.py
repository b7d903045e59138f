"""A pass-through FUSE file system that fails fsync on demand: a disk whose
flush fails, for the e2e test `a_failed_fsync_is_never_acknowledged`.

    python faultfs.py ROOT MOUNTPOINT CONTROL_DIR

Every operation goes to ROOT. While CONTROL_DIR/fail-fsync exists, fsync and
fdatasync of any file answer EIO (as a failing device does); the data written
stays in ROOT (the kernel's write-back may or may not have reached it: the
caller must not rely on either). Runs in the foreground until unmounted.
Needs libfuse2 and fusepy (`pip install fusepy`), and root (or fusermount).
"""

import errno
import os
import sys

from fuse import FUSE, FuseOSError, Operations


class FaultFs(Operations):
    def __init__(self, root: str, control: str) -> None:
        self.root = root
        self.flag = os.path.join(control, "fail-fsync")

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _fail(self) -> bool:
        return os.path.exists(self.flag)

    # Files and directories, passed through.
    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        return os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._path(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid", "st_ino")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def mknod(self, path, mode, dev):
        return os.mknod(self._path(path), mode, dev)

    def rmdir(self, path):
        return os.rmdir(self._path(path))

    def mkdir(self, path, mode):
        return os.mkdir(self._path(path), mode)

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def unlink(self, path):
        return os.unlink(self._path(path))

    def symlink(self, name, target):
        return os.symlink(target, self._path(name))

    def rename(self, old, new):
        return os.rename(self._path(old), self._path(new))

    def link(self, target, name):
        return os.link(self._path(name), self._path(target))

    def utimens(self, path, times=None):
        return os.utime(self._path(path), times)

    def open(self, path, flags):
        return os.open(self._path(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            return os.ftruncate(fh, length)
        with open(self._path(path), "r+") as f:
            f.truncate(length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    # The fault.
    def fsync(self, path, datasync, fh):
        if self._fail():
            raise FuseOSError(errno.EIO)
        return os.fdatasync(fh) if datasync else os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        if self._fail():
            raise FuseOSError(errno.EIO)
        return 0


if __name__ == "__main__":
    root, mountpoint, control = sys.argv[1:4]
    FUSE(FaultFs(root, control), mountpoint, foreground=True, nothreads=True, allow_other=False)
