package crashtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// powerFS is a FUSE loopback file system that can simulate a power cut: every
// write goes to the backing directory at once (so reads, sizes and mmap see it,
// as they see the page cache), but the bytes it overwrote are kept in an undo
// log until the file is fsynced. CutPower rolls every file back to its last
// fsync. Metadata (create, rename, unlink) is treated as durable at once,
// which is kinder than a real disk, so losses found here are real losses.
type powerFS struct {
	backing string
	mount   string
	server  *fuse.Server

	mu   sync.Mutex
	logs map[uint64]*undoLog // backing inode -> unsynced changes
}

type undoLog struct {
	fd      int // our own descriptor: survives renames and the writer's close
	entries []undoEntry
}

// undoEntry restores a range and the size the file had before a change.
type undoEntry struct {
	off     int64
	old     []byte
	oldSize int64
}

// mountPowerFS mounts a powerFS over a new backing dir, or skips the test
// where FUSE is not available.
func mountPowerFS(t *testing.T) *powerFS {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("FUSE is not available here (/dev/fuse missing); install fuse3 to run the power-loss test")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not found; install fuse3 to run the power-loss test")
	}
	p := &powerFS{backing: t.TempDir(), mount: t.TempDir(), logs: map[uint64]*undoLog{}}
	if err := p.mountFS(); err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() {
		p.unmount()
		p.mu.Lock()
		for _, l := range p.logs {
			syscall.Close(l.fd)
		}
		p.mu.Unlock()
	})
	return p
}

func (p *powerFS) mountFS() error {
	root := &fs.LoopbackRoot{Path: p.backing}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &powerNode{LoopbackNode: fs.LoopbackNode{RootData: r}, p: p}
	}
	root.RootNode = &powerNode{LoopbackNode: fs.LoopbackNode{RootData: root}, p: p}
	var st syscall.Stat_t
	if err := syscall.Stat(p.backing, &st); err != nil {
		return err
	}
	root.Dev = uint64(st.Dev)
	timeout := time.Duration(0)
	srv, err := fs.Mount(p.mount, root.RootNode, &fs.Options{
		EntryTimeout: &timeout, AttrTimeout: &timeout, NegativeTimeout: &timeout,
		MountOptions: fuse.MountOptions{FsName: "powerfs", DisableXAttrs: true},
	})
	if err != nil {
		return err
	}
	p.server = srv
	return nil
}

func (p *powerFS) unmount() {
	if p.server == nil {
		return
	}
	for range 50 {
		if err := p.server.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.server.Wait()
	p.server = nil
}

// CutPower unmounts (dropping the kernel's caches), rolls every file back to
// its last fsync, and mounts again. The process using the files must be dead.
// It returns how many overwritten bytes were restored (appends are dropped by
// the size roll-back and not counted).
func (p *powerFS) CutPower(t *testing.T) (bytesLost int) {
	t.Helper()
	p.unmount()
	p.mu.Lock()
	for ino, l := range p.logs {
		for i := len(l.entries) - 1; i >= 0; i-- {
			e := l.entries[i]
			if len(e.old) > 0 {
				if _, err := syscall.Pwrite(l.fd, e.old, e.off); err != nil {
					t.Fatalf("roll back inode %d: %v", ino, err)
				}
			}
			bytesLost += len(e.old)
			if err := syscall.Ftruncate(l.fd, e.oldSize); err != nil {
				t.Fatalf("roll back inode %d size: %v", ino, err)
			}
		}
		syscall.Close(l.fd)
	}
	p.logs = map[uint64]*undoLog{}
	p.mu.Unlock()
	if err := p.mountFS(); err != nil {
		t.Fatalf("mount again: %v", err)
	}
	return bytesLost
}

// recordTruncate saves what a size change to size is about to cut off.
func (p *powerFS) recordTruncate(path string, ino uint64, size int64) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fs.ToErrno(err)
	}
	return p.record(path, ino, size, int(max(st.Size-size, 0)))
}

// record saves what a change of [off, off+n) and the size is about to
// overwrite.
func (p *powerFS) record(path string, ino uint64, off int64, n int) syscall.Errno {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.logs[ino]
	if !ok {
		fd, err := syscall.Open(path, syscall.O_RDWR, 0)
		if err != nil {
			return fs.ToErrno(err)
		}
		l = &undoLog{fd: fd}
		p.logs[ino] = l
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(l.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	e := undoEntry{off: off, oldSize: st.Size}
	if end := min(off+int64(n), st.Size); end > off {
		e.old = make([]byte, end-off)
		if _, err := syscall.Pread(l.fd, e.old, off); err != nil {
			return fs.ToErrno(err)
		}
	}
	l.entries = append(l.entries, e)
	return 0
}

// synced forgets the undo log of a file that was fsynced.
func (p *powerFS) synced(ino uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.logs[ino]; ok {
		syscall.Close(l.fd)
		delete(p.logs, ino)
	}
}

// powerNode hands out powerFiles.
type powerNode struct {
	fs.LoopbackNode
	p *powerFS
}

func (n *powerNode) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

func (n *powerNode) wrap(fh fs.FileHandle) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	return &powerFile{LoopbackFile: lf, n: n}
}

func (n *powerNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		// An open that truncates: treated as durable metadata, like create.
		n.p.synced(n.StableAttr().Ino)
	}
	return n.wrap(fh), ff, 0
}

func (n *powerNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ch, fh, ff, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	child, ok := ch.Operations().(*powerNode) // n is the directory
	if !ok {
		return ch, fh, ff, 0
	}
	return ch, child.wrap(fh), ff, 0
}

// Setattr without a file handle: a truncate by path.
func (n *powerNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := f.(*powerFile); !ok {
		if sz, ok := in.GetSize(); ok {
			if errno := n.p.recordTruncate(n.backingPath(), n.StableAttr().Ino, int64(sz)); errno != 0 {
				return errno
			}
		}
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// powerFile records what each write overwrites, and forgets it on fsync.
type powerFile struct {
	*fs.LoopbackFile
	n *powerNode
}

func (f *powerFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.n.p.record(f.n.backingPath(), f.n.StableAttr().Ino, off, len(data)); errno != 0 {
		return 0, errno
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

// PassthroughFd says no: with FUSE passthrough the kernel would write to the
// backing file directly and the undo log would never see the writes.
func (f *powerFile) PassthroughFd() (int, bool) { return 0, false }

func (f *powerFile) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if errno := f.n.p.recordTruncate(f.n.backingPath(), f.n.StableAttr().Ino, int64(sz)); errno != 0 {
			return errno
		}
	}
	return f.LoopbackFile.Setattr(ctx, in, out)
}

func (f *powerFile) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if errno := f.n.p.record(f.n.backingPath(), f.n.StableAttr().Ino, int64(off), 0); errno != 0 {
		return errno
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

func (f *powerFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := f.LoopbackFile.Fsync(ctx, flags); errno != 0 {
		return errno
	}
	f.n.p.synced(f.n.StableAttr().Ino)
	return 0
}
