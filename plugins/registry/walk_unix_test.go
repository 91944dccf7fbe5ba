//go:build unix

package registry

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// appUser is an application's user: not root, owner of its config folder.
const appUser = 1000

const sudoers = "root ALL=(ALL:ALL) ALL\n"

// userRoot returns a root for the plugin laid out as a host has it:
// /etc/sudoers is root's (0440) and /opt/app, an application's config
// folder, is appUser's.
func userRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test gives files to another user with chown, as the agent's host has them")
	}
	root := t.TempDir()
	writeFile(t, root, "etc/sudoers", sudoers)
	if err := os.Chmod(filepath.Join(root, "etc/sudoers"), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "opt/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	chownUser(t, root, "opt/app")
	return root
}

// chownUser gives p in root (not what it points to) to appUser.
func chownUser(t *testing.T, root, p string) {
	t.Helper()
	if err := os.Lchown(filepath.Join(root, p), appUser, appUser); err != nil {
		t.Fatal(err)
	}
}

// symlinkAs makes p in root a symlink to target, owned by uid. An
// absolute target is taken inside root, as it is when the root is /.
func symlinkAs(t *testing.T, root, p, target string, uid int) {
	t.Helper()
	if filepath.IsAbs(target) {
		target = filepath.Join(root, target)
	}
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(full, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// sudoersUntouched fails t unless /etc/sudoers in root is as userRoot made it.
func sudoersUntouched(t *testing.T, root string) {
	t.Helper()
	p := filepath.Join(root, "etc/sudoers")
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("/etc/sudoers: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if got := readFile(t, root, "etc/sudoers"); got != sudoers || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o440 || st.Uid != 0 {
		t.Fatalf("/etc/sudoers changed: %q, %v, uid %d", got, fi.Mode(), st.Uid)
	}
}

func owner(t *testing.T, root, p string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// A user who owns an application's config folder cannot make the plugin,
// which runs as root, read or write a file that is not theirs, whatever
// the policy's file (or a folder on its way) is replaced with: a symlink
// to a root file or folder, absolute or relative, straight or through a
// link root made, or a hard link. Scan, set and delete_key are all
// refused before anything is read, journaled or written.
func TestAUserCannotSendTheWalkToAFileNotTheirs(t *testing.T) {
	tests := []struct {
		name, path string
		layout     func(t *testing.T, root string)
	}{
		{"absolute symlink to a root file", "/opt/app/app.conf", func(t *testing.T, root string) {
			symlinkAs(t, root, "opt/app/app.conf", "/etc/sudoers", appUser)
		}},
		{"relative symlink to a root file", "/opt/app/app.conf", func(t *testing.T, root string) {
			symlinkAs(t, root, "opt/app/app.conf", "../../etc/sudoers", appUser)
		}},
		{"symlink to a root folder on the way", "/opt/app/conf/sudoers", func(t *testing.T, root string) {
			symlinkAs(t, root, "opt/app/conf", "/etc", appUser)
		}},
		{"symlink to a root file through a root symlink", "/opt/app/app.conf", func(t *testing.T, root string) {
			symlinkAs(t, root, "etc/alias", "sudoers", 0)
			symlinkAs(t, root, "opt/app/app.conf", "/etc/alias", appUser)
		}},
		{"user folder of symlinks to a root file", "/opt/app/sub/app.conf", func(t *testing.T, root string) {
			if err := os.Mkdir(filepath.Join(root, "opt/app/sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			chownUser(t, root, "opt/app/sub")
			symlinkAs(t, root, "opt/app/sub/app.conf", "../../../etc/sudoers", appUser)
		}},
		{"hard link to a root file", "/opt/app/app.conf", func(t *testing.T, root string) {
			if err := os.Link(filepath.Join(root, "etc/sudoers"), filepath.Join(root, "opt/app/app.conf")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	specs := map[string]*wire.RegistrySpec{
		"set":        {Name: "Defaults", Data: []string{"!authenticate"}},
		"delete_key": {Action: ActionDeleteKey},
	}
	ctx := context.Background()
	for _, tt := range tests {
		for action, rs := range specs {
			t.Run(tt.name+"/"+action, func(t *testing.T) {
				root := userRoot(t)
				tt.layout(t, root)
				rs := &wire.RegistrySpec{Path: tt.path, Name: rs.Name, Data: rs.Data, Action: rs.Action}
				item := regItem("registry/app", wire.State_STATE_PRESENT, rs)
				m := New(logging.Discard())
				st, err := m.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{item}})
				if err != nil {
					t.Fatal(err)
				}
				if s := st.GetItems()[0]; s.GetCompliant() || !strings.Contains(s.GetMessage(), "refused") {
					t.Errorf("Scan = %v; want the read refused", s)
				}
				_, err = m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item})
				if !errors.Is(err, ErrOutside) || !strings.Contains(err.Error(), "uid 1000") || !strings.Contains(err.Error(), "refused") {
					t.Errorf("Apply = %v; want a refusal naming the user's uid", err)
				}
				sudoersUntouched(t, root)
				if entries, _ := os.ReadDir(filepath.Join(root, StateDir)); len(entries) != 0 {
					t.Errorf("a refused item journaled what it read: %v", entries)
				}
			})
		}
	}
}

// The escalation as a reviewer proved it: the plugin deletes a user's
// settings file (delete_key), journaling its content; the user puts a
// symlink to /etc/sudoers in its place; the item's state becomes absent.
// Putting the original back must not write the user's content as root
// into /etc/sudoers.
func TestPuttingBackAUsersFileDoesNotFollowTheirSymlink(t *testing.T) {
	root := userRoot(t)
	const evil = "appuser ALL=(ALL) NOPASSWD: ALL\n"
	writeFile(t, root, "opt/app/app.conf", evil)
	chownUser(t, root, "opt/app/app.conf")
	ctx := context.Background()
	m := New(logging.Discard())
	rs := &wire.RegistrySpec{Path: "/opt/app/app.conf", Action: ActionDeleteKey}
	if _, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: regItem("registry/app", wire.State_STATE_PRESENT, rs)}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, root, "opt/app/app.conf"); got != "<missing>" {
		t.Fatalf("delete_key left %q", got)
	}
	symlinkAs(t, root, "opt/app/app.conf", "/etc/sudoers", appUser)
	_, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: regItem("registry/app", wire.State_STATE_ABSENT, rs)})
	if !errors.Is(err, ErrOutside) || !strings.Contains(err.Error(), "symlink owned by uid 1000") {
		t.Errorf("Apply absent = %v; want a refusal", err)
	}
	sudoersUntouched(t, root)
}

// What the walk keeps following: symlinks root made, and a user's folder,
// files and symlinks as long as all of it is that user's. A file and a
// folder the plugin creates in a user's folder are given to that user,
// so the next walk still accepts them.
func TestTheWalkFollowsRootsLinksAndAUsersOwnFiles(t *testing.T) {
	tests := []struct {
		name, path string
		layout     func(t *testing.T, root string)
		file       string // the file that must change
		uid        uint32 // its owner after the change
	}{
		{"root symlink to a root file", "/etc/app.conf", func(t *testing.T, root string) {
			writeFile(t, root, "opt/vendor/app.conf", "a = 1\n")
			symlinkAs(t, root, "etc/app.conf", "/opt/vendor/app.conf", 0)
		}, "opt/vendor/app.conf", 0},
		{"root symlink to a user's file", "/etc/app.conf", func(t *testing.T, root string) {
			writeFile(t, root, "opt/app/app.conf", "a = 1\n")
			chownUser(t, root, "opt/app/app.conf")
			symlinkAs(t, root, "etc/app.conf", "../opt/app/app.conf", 0)
		}, "opt/app/app.conf", appUser},
		{"user's file in user's folder", "/opt/app/app.conf", func(t *testing.T, root string) {
			writeFile(t, root, "opt/app/app.conf", "a = 1\n")
			chownUser(t, root, "opt/app/app.conf")
		}, "opt/app/app.conf", appUser},
		{"user's relative symlink to user's file", "/opt/app/app.conf", func(t *testing.T, root string) {
			writeFile(t, root, "opt/app/real.conf", "a = 1\n")
			chownUser(t, root, "opt/app/real.conf")
			symlinkAs(t, root, "opt/app/app.conf", "real.conf", appUser)
		}, "opt/app/real.conf", appUser},
		{"user's absolute symlink to user's folder", "/opt/app/conf/app.conf", func(t *testing.T, root string) {
			writeFile(t, root, "opt/app/v2/app.conf", "a = 1\n")
			chownUser(t, root, "opt/app/v2")
			chownUser(t, root, "opt/app/v2/app.conf")
			symlinkAs(t, root, "opt/app/conf", "/opt/app/v2", appUser)
		}, "opt/app/v2/app.conf", appUser},
		{"new file in a new folder in a user's folder", "/opt/app/conf.d/new.conf", func(t *testing.T, root string) {}, "opt/app/conf.d/new.conf", appUser},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := userRoot(t)
			tt.layout(t, root)
			m := New(logging.Discard())
			item := regItem("registry/app", wire.State_STATE_PRESENT, &wire.RegistrySpec{Path: tt.path, Name: "b", Data: []string{"2"}})
			if _, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := readFile(t, root, tt.file); !strings.HasSuffix(got, "b = 2\n") {
				t.Fatalf("%s after apply: %q", tt.file, got)
			}
			if uid, gid := owner(t, root, tt.file); uid != tt.uid || gid != tt.uid {
				t.Errorf("%s is owned by %d:%d, want %d:%d", tt.file, uid, gid, tt.uid, tt.uid)
			}
			if uid, _ := owner(t, root, filepath.Dir(tt.file)); uid != tt.uid {
				t.Errorf("the folder of %s is owned by %d, want %d", tt.file, uid, tt.uid)
			}
			st, err := m.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{item}})
			if err != nil || !st.GetItems()[0].GetCompliant() {
				t.Fatalf("Scan after apply = %v, %v; want compliant", st, err)
			}
			for _, link := range []string{"etc/app.conf", "opt/app/app.conf", "opt/app/conf"} {
				if _, err := os.Readlink(filepath.Join(root, link)); err == nil || errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if tt.file != link {
					t.Errorf("%s is no longer a symlink", link)
				}
			}
		})
	}
}

// A folder on the way swapped for a symlink to /etc after the walk (a
// user racing the plugin) does not lead the read or the write there: both
// act on the folder that was checked.
func TestAFolderSwappedAfterTheWalkDoesNotLeadReadsAndWrites(t *testing.T) {
	root := userRoot(t)
	writeFile(t, root, "opt/app/sudoers", "mine = 1\n")
	chownUser(t, root, "opt/app/sudoers")
	b, err := newFileBackend(root, DefaultAllow)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := b.open("/opt/app/sudoers")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	if err := os.Rename(filepath.Join(root, "opt/app"), filepath.Join(root, "opt/app.old")); err != nil {
		t.Fatal(err)
	}
	symlinkAs(t, root, "opt/app", "/etc", appUser)

	data, _, err := tg.read()
	if err != nil || string(data) != "mine = 1\n" {
		t.Errorf("read after the swap = %q, %v; want the checked file's content", data, err)
	}
	if err := tg.write([]byte("mine = 2\n"), 0o644); err != nil {
		t.Logf("write after the swap: %v", err) // refusing is as good as writing where checked
	} else if got := readFile(t, root, "opt/app.old/sudoers"); got != "mine = 2\n" {
		t.Errorf("the checked file has %q after the write", got)
	}
	sudoersUntouched(t, root)
}

// The file itself replaced after the walk, by a symlink to a root file
// beside it, is neither read nor replaced.
func TestAFileSwappedAfterTheWalkIsNotUsed(t *testing.T) {
	root := userRoot(t)
	writeFile(t, root, "opt/app/app.conf", "mine = 1\n")
	chownUser(t, root, "opt/app/app.conf")
	writeFile(t, root, "opt/app/secret", "root's = 1\n")
	if err := os.Chmod(filepath.Join(root, "opt/app/secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := newFileBackend(root, DefaultAllow)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := b.open("/opt/app/app.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	if err := os.Remove(filepath.Join(root, "opt/app/app.conf")); err != nil {
		t.Fatal(err)
	}
	symlinkAs(t, root, "opt/app/app.conf", "secret", appUser)
	if data, _, err := tg.read(); !errors.Is(err, errChanged) {
		t.Errorf("read after the swap = %q, %v; want it refused as changed", data, err)
	}
	if err := tg.write([]byte("x = 1\n"), 0o644); !errors.Is(err, errChanged) {
		t.Errorf("write after the swap = %v; want it refused as changed", err)
	}
	if err := tg.remove(); !errors.Is(err, errChanged) {
		t.Errorf("remove after the swap = %v; want it refused as changed", err)
	}
	if got := readFile(t, root, "opt/app/secret"); got != "root's = 1\n" {
		t.Errorf("the root file beside it has %q", got)
	}
}
