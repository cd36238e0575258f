package main

// The proxy's guest, emulated for the hotadd transport (--guest-root DIR).
// On a real proxy the hypervisor presents a hot-added disk as a new SCSI
// device; here, when ReconfigVM_Task adds a disk to the proxy VM, the disk's
// flat file is attached to a loop device (read-only, losetup -r, unless it
// was attached persistent, as a restore attaches a new VM's disk) and
// published under DIR with the identifiers a real Linux guest shows:
//
//	DIR/sys/block/sdX/{dev,size,device/wwid,device/delete}
//	DIR/dev/sdX                    block node (mknod) of the loop device
//	DIR/sys/class/scsi_host/host{0,1}/scan
//	DIR/sys/class/dmi/id/product_uuid   the proxy's BIOS UUID, first three
//	                                    fields byte-swapped (SMBIOS 2.6+)
//	DIR/sys/class/net/eth0/address      the proxy's MAC
//
// A write to any scan file publishes the attachments made since (as a
// rescan does for LSI Logic); a write to device/delete withdraws the device
// and detaches its loop device (a later rescan does not bring that disk
// back, unlike a real kernel, so that concurrent jobs' rescans cannot race
// a detach). A disk removed from the proxy while still
// published is withdrawn too (surprise removal). The proxy's own disk is
// sda, with a wwid but no device node. Needs root (losetup, mknod).

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type guestDisk struct {
	key      int32
	file     string // datastore path
	flat     string // local flat file
	uuid     string
	capacity int64
	ctrlKey  int32 // the proxy's SCSI controller (1000 + bus)
	unit     int32
	name     string // sdX once published
	loop     string // /dev/loopN once published
	devDir   string // its SCSI device directory under sys/devices
	deleted  bool   // removed from the guest: a rescan does not bring it back
	// writable: attached persistent (a restore writing a new VM's disk);
	// its loop device is read-write. Other modes are published read-only.
	writable bool
}

type guest struct {
	mu       sync.Mutex
	root     string
	proxy    types.ManagedObjectReference
	own      map[int32]bool
	disks    map[int32]*guestDisk // attached on the proxy, by device key
	used     map[string]bool      // sdX names in use
	stop     chan struct{}
	stopped  chan struct{}
	hostScan []string
	noWWID   bool // the proxy without disk.EnableUUID: no device/wwid
}

// The PCI address Linux gives SCSI controller bus N of the proxy (behind the
// root port pciBridge4+N), as /sys/bus/pci/slots/<pciSlotNumber>/address
// shows it; its host number is N.
func pciAddress(bus int32) string { return fmt.Sprintf("0000:%02x:00", 3+bus) }

// scsiDevicePath is where a disk at bus:unit sits in sysfs, relative to
// sys/: what /sys/block/sdX/device links to.
func scsiDevicePath(bus, unit int32) string {
	return fmt.Sprintf("devices/pci0000:00/0000:00:%02x.0/%s.0/host%d/target%d:0:%d/%d:0:%d:0",
		0x15+bus, pciAddress(bus), bus, bus, unit, bus, unit)
}

func wwidOf(uuid string) string {
	return "naa." + strings.ToLower(strings.ReplaceAll(uuid, "-", ""))
}

// swappedUUID prints a BIOS UUID as Linux does in product_uuid.
func swappedUUID(u string) string {
	h := strings.ReplaceAll(strings.ToLower(u), "-", "")
	if len(h) != 32 {
		return u
	}
	sw := func(s string) string {
		var b strings.Builder
		for i := len(s) - 2; i >= 0; i -= 2 {
			b.WriteString(s[i : i+2])
		}
		return b.String()
	}
	return sw(h[0:8]) + "-" + sw(h[8:12]) + "-" + sw(h[12:16]) + "-" + h[16:20] + "-" + h[20:32]
}

func writeFile(p, s string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(s), 0o644)
}

func (h *harness) startGuest(root string, noWWID bool) error {
	st := h.vms[proxyVM]
	if st == nil {
		return fmt.Errorf("guest: no proxy VM")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	g := &guest{root: root, proxy: st.ref, own: map[int32]bool{}, disks: map[int32]*guestDisk{},
		used: map[string]bool{}, stop: make(chan struct{}), stopped: make(chan struct{}), noWWID: noWWID}
	mac := ""
	if len(st.nics) > 0 {
		mac = st.nics[0].MAC
	}
	files := map[string]string{
		"sys/class/dmi/id/product_uuid": swappedUUID(st.biosUUID) + "\n",
		"sys/class/net/eth0/address":    mac + "\n",
		"sys/class/net/lo/address":      "00:00:00:00:00:00\n",
	}
	for i := 0; i < 2; i++ {
		p := fmt.Sprintf("sys/class/scsi_host/host%d/scan", i)
		files[p] = ""
		g.hostScan = append(g.hostScan, filepath.Join(root, p))
	}
	for bus := int32(0); bus < 4; bus++ {
		files[fmt.Sprintf("sys/bus/pci/slots/%d/address", scsiPCISlot(bus))] = pciAddress(bus) + "\n"
	}
	for i, d := range st.disks {
		g.own[d.key] = true
		name := fmt.Sprintf("sd%c", 'a'+i)
		g.used[name] = true
		if !noWWID {
			files["sys/block/"+name+"/device/wwid"] = wwidOf(d.uuid) + "\n"
		}
		files["sys/block/"+name+"/size"] = fmt.Sprintf("%d\n", d.capacity/512)
		files["sys/block/"+name+"/dev"] = fmt.Sprintf("8:%d\n", 16*i)
	}
	for p, s := range files {
		if err := writeFile(filepath.Join(root, p), s); err != nil {
			return fmt.Errorf("guest: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		return err
	}
	h.guest = g
	go g.watch()
	log.Printf("guest emulation under %s (proxy %s)", root, st.ref.Value)
	return nil
}

// syncProxy runs after every successful ReconfigVM_Task of the proxy: new
// disks wait for a rescan, removed ones leave the guest.
func (h *harness) syncProxy(vm *simulator.VirtualMachine) {
	g := h.guest
	if g == nil || vm.Self != g.proxy {
		return
	}
	present := map[int32]bool{}
	var added []*guestDisk
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		present[disk.Key] = true
		b := backingOf(disk)
		if g.own[disk.Key] || b == nil {
			continue
		}
		gd := &guestDisk{key: disk.Key, file: b.FileName, uuid: b.Uuid, capacity: disk.CapacityInBytes,
			ctrlKey: disk.ControllerKey, writable: writableMode(b.DiskMode)}
		if disk.UnitNumber != nil {
			gd.unit = *disk.UnitNumber
		}
		if gd.capacity == 0 {
			gd.capacity = disk.CapacityInKB * 1024
		}
		if d := h.diskByFile(b.FileName); d != nil {
			for _, f := range d.chain {
				if d.dsPath(f.rel) == b.FileName {
					gd.flat = h.flatPath(d, f)
				}
			}
		}
		added = append(added, gd)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gd := range added {
		if _, ok := g.disks[gd.key]; !ok {
			g.disks[gd.key] = gd
			log.Printf("guest: disk %d (%s) attached; visible after a rescan", gd.key, gd.file)
		}
	}
	for key, gd := range g.disks {
		if !present[key] {
			if gd.name != "" {
				log.Printf("guest: %s removed from the proxy while still in the guest", gd.name)
				g.withdraw(gd)
			}
			delete(g.disks, key)
		}
	}
}

func (g *guest) nextName() string {
	for c := 'b'; c <= 'z'; c++ {
		n := fmt.Sprintf("sd%c", c)
		if !g.used[n] {
			return n
		}
	}
	return ""
}

func (g *guest) publish(gd *guestDisk) error {
	if gd.flat == "" {
		return fmt.Errorf("no local file for %s", gd.file)
	}
	name := g.nextName()
	if name == "" {
		return fmt.Errorf("out of sd names")
	}
	args := []string{"-r", "-f", "--show", gd.flat}
	if gd.writable {
		args = args[1:]
	}
	out, err := exec.Command("losetup", args...).Output()
	if err != nil {
		return fmt.Errorf("losetup %v: %w", args, err)
	}
	loop := strings.TrimSpace(string(out))
	var st syscall.Stat_t
	if err := syscall.Stat(loop, &st); err != nil {
		exec.Command("losetup", "-d", loop).Run()
		return err
	}
	node := filepath.Join(g.root, "dev", name)
	os.Remove(node)
	if err := syscall.Mknod(node, syscall.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		exec.Command("losetup", "-d", loop).Run()
		return fmt.Errorf("mknod %s: %w", node, err)
	}
	maj, min := (st.Rdev>>8)&0xfff, (st.Rdev&0xff)|((st.Rdev>>12)&0xfff00)
	dir := filepath.Join(g.root, "sys/block", name)
	// sys/block/sdX/device links to the SCSI device under its controller's
	// PCI function, as in Linux: sdX -> ../../devices/pci.../hostH/targetH:0:U/H:0:U:0.
	devRel := scsiDevicePath(gd.ctrlKey-1000, gd.unit)
	devDir := filepath.Join(g.root, "sys", devRel)
	files := map[string]string{
		"device/delete": "",
		"size":          fmt.Sprintf("%d\n", gd.capacity/512),
		"dev":           fmt.Sprintf("%d:%d\n", maj, min),
	}
	if !g.noWWID {
		files["device/wwid"] = wwidOf(gd.uuid) + "\n"
	}
	if err := os.MkdirAll(devDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(filepath.Join("../..", devRel), filepath.Join(dir, "device")); err != nil {
		return err
	}
	for p, s := range files {
		if err := writeFile(filepath.Join(dir, p), s); err != nil {
			return err
		}
	}
	gd.devDir = devDir
	gd.name, gd.loop = name, loop
	g.used[name] = true
	log.Printf("guest: %s is disk %d (%s) on %s", name, gd.key, gd.file, loop)
	return nil
}

func (g *guest) withdraw(gd *guestDisk) {
	os.Remove(filepath.Join(g.root, "dev", gd.name))
	os.RemoveAll(filepath.Join(g.root, "sys/block", gd.name))
	if gd.devDir != "" {
		os.RemoveAll(filepath.Dir(gd.devDir))
		gd.devDir = ""
	}
	if gd.loop != "" {
		// The agent sets the kernel's read-only flag (BLKROSET) on the
		// device, and that flag outlives the loop binding: clear it so the
		// next user of this loop device can write.
		if err := exec.Command("blockdev", "--setrw", gd.loop).Run(); err != nil {
			log.Printf("guest: blockdev --setrw %s: %v", gd.loop, err)
		}
		if err := exec.Command("losetup", "-d", gd.loop).Run(); err != nil {
			log.Printf("guest: losetup -d %s: %v", gd.loop, err)
		}
	}
	log.Printf("guest: %s withdrawn (disk %d)", gd.name, gd.key)
	delete(g.used, gd.name)
	gd.name, gd.loop = "", ""
}

func nonEmpty(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Size() > 0
}

// watch polls the scan and delete files, as the kernel would act on writes.
func (g *guest) watch() {
	defer close(g.stopped)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		rescan := false
		for _, p := range g.hostScan {
			if nonEmpty(p) {
				rescan = true
				os.WriteFile(p, nil, 0o644)
			}
		}
		keys := make([]int, 0, len(g.disks))
		for k := range g.disks {
			keys = append(keys, int(k))
		}
		sort.Ints(keys)
		for _, k := range keys {
			gd := g.disks[int32(k)]
			if gd.name == "" && !gd.deleted && rescan {
				if err := g.publish(gd); err != nil {
					log.Printf("guest: cannot present disk %d: %v", gd.key, err)
				}
			} else if gd.name != "" && nonEmpty(filepath.Join(g.root, "sys/block", gd.name, "device/delete")) {
				g.withdraw(gd)
				gd.deleted = true
			}
		}
		g.mu.Unlock()
	}
}

// close detaches every loop device still published.
func (g *guest) close() {
	if g == nil {
		return
	}
	close(g.stop)
	<-g.stopped
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gd := range g.disks {
		if gd.name != "" {
			g.withdraw(gd)
		}
	}
}
