package main

// The proxy's guest as a real QEMU VM (--guest-qmp SOCKET): the Ferry
// appliance booted by tests/appliance/qemu_guest.py. The proxy VM of the
// inventory takes the guest's identity, and disks attached to the proxy are
// hot-plugged into the guest's paravirtual SCSI controller, so that the
// guest's own kernel and udev find them (docs/VCSIM.md, "The proxy as a QEMU
// guest").
//
//   - identity: query-uuid gives the BIOS UUID; the proxy's config.uuid is
//     that UUID with its first three fields byte-swapped, as vSphere's
//     config.uuid relates to what a Linux guest prints in product_uuid. The
//     MAC is the guest's first vmxnet3 NIC's (qom-get mac).
//   - ReconfigVM_Task add of a disk to the proxy: blockdev-add of the disk's
//     local flat file (read-only for non-persistent modes), then device_add
//     scsi-hd on bus scsi<bus>.0 (the controller 1000+bus), scsi-id = unit,
//     serial = the disk UUID's 32 hex digits (VPD 0x80), wwn = its first 64
//     bits (QEMU's wwn is 64-bit; ESXi shows the whole 128-bit NAA id).
//   - remove: before the simulator changes its inventory, device_del, wait
//     for DEVICE_DELETED, blockdev-del; when QEMU does not release the device
//     in time, the reconfigure fails (the inventory keeps the disk), as
//     vSphere fails a remove of a device it cannot detach.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const qmpUnplugTimeout = 15 * time.Second

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

type qmpClient struct {
	cmdMu   sync.Mutex // one command at a time
	conn    net.Conn
	replies chan qmpReply
	mu      sync.Mutex
	cond    *sync.Cond
	deleted map[string]bool // DEVICE_DELETED seen, by device id
	closed  bool
}

type qmpDisk struct {
	id, node string
	file     string
}

type qmpGuest struct {
	mu      sync.Mutex
	q       *qmpClient
	proxy   types.ManagedObjectReference
	own     map[int32]bool
	plugged map[int32]*qmpDisk
}

func dialQMP(path string) (*qmpClient, error) {
	var conn net.Conn
	var err error
	// QEMU may still be creating its socket.
	for i := 0; i < 100; i++ {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("guest QMP %s: %w", path, err)
	}
	c := &qmpClient{conn: conn, replies: make(chan qmpReply, 1), deleted: map[string]bool{}}
	c.cond = sync.NewCond(&c.mu)
	r := bufio.NewReaderSize(conn, 1<<16)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, fmt.Errorf("guest QMP %s: greeting: %w", path, err)
	}
	go c.read(r)
	if _, err := c.cmd("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *qmpClient) read(r *bufio.Reader) {
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.cond.Broadcast()
			c.mu.Unlock()
			close(c.replies)
			return
		}
		var m qmpReply
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if m.Event != "" {
			if m.Event == "DEVICE_DELETED" {
				var d struct {
					Device string `json:"device"`
				}
				if json.Unmarshal(m.Data, &d) == nil && d.Device != "" {
					c.mu.Lock()
					c.deleted[d.Device] = true
					c.cond.Broadcast()
					c.mu.Unlock()
				}
			}
			continue
		}
		c.replies <- m
	}
}

func (c *qmpClient) cmd(name string, args interface{}) (json.RawMessage, error) {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	msg := map[string]interface{}{"execute": name}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", name, err)
	}
	select {
	case r, ok := <-c.replies:
		if !ok {
			return nil, fmt.Errorf("QMP %s: QEMU closed the connection", name)
		}
		if r.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s", name, r.Error.Desc)
		}
		return r.Return, nil
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("QMP %s: no reply within 60 s", name)
	}
}

// waitDeleted waits for DEVICE_DELETED of id.
func (c *qmpClient) waitDeleted(id string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.deleted[id] && !c.closed && time.Now().Before(deadline) {
		c.cond.Wait()
	}
	ok := c.deleted[id]
	delete(c.deleted, id)
	return ok
}

// guestIdentity reads the guest's BIOS UUID and its vmxnet3 NIC's MAC.
func (c *qmpClient) guestIdentity() (uuid, mac string, err error) {
	raw, err := c.cmd("query-uuid", nil)
	if err != nil {
		return "", "", err
	}
	var u struct {
		UUID string `json:"UUID"`
	}
	if err := json.Unmarshal(raw, &u); err != nil || len(u.UUID) != 36 {
		return "", "", fmt.Errorf("query-uuid: %s", raw)
	}
	for _, base := range []string{"/machine/peripheral", "/machine/peripheral-anon"} {
		raw, err := c.cmd("qom-list", map[string]string{"path": base})
		if err != nil {
			continue
		}
		var props []struct{ Name, Type string }
		json.Unmarshal(raw, &props)
		for _, p := range props {
			if p.Type != "child<vmxnet3>" {
				continue
			}
			raw, err := c.cmd("qom-get", map[string]string{"path": base + "/" + p.Name, "property": "mac"})
			if err != nil {
				return "", "", err
			}
			if err := json.Unmarshal(raw, &mac); err != nil {
				return "", "", fmt.Errorf("qom-get mac: %s", raw)
			}
			return u.UUID, strings.ToLower(mac), nil
		}
	}
	return "", "", fmt.Errorf("the guest has no vmxnet3 NIC")
}

// startQMPGuest takes over the proxy VM's disks present now as its own.
func (h *harness) startQMPGuest(c *qmpClient) error {
	st := h.vms[proxyVM]
	if st == nil {
		return fmt.Errorf("guest: no proxy VM")
	}
	g := &qmpGuest{q: c, proxy: st.ref, own: map[int32]bool{}, plugged: map[int32]*qmpDisk{}}
	for _, d := range st.disks {
		g.own[d.key] = true
	}
	h.qmpGuest = g
	log.Printf("proxy %s is the QEMU guest (BIOS UUID %s as config.uuid %s, MAC %s)",
		st.ref.Value, swappedUUID(st.biosUUID), st.biosUUID, st.nics[0].MAC)
	return nil
}

func qmpWWN(uuid string) (uint64, bool) {
	h := strings.ToLower(strings.ReplaceAll(uuid, "-", ""))
	if len(h) != 32 {
		return 0, false
	}
	v, err := strconv.ParseUint(h[:16], 16, 64)
	return v, err == nil
}

// unplugRemoved runs before the simulator applies a reconfigure of the
// proxy: every disk the spec removes leaves the guest first, or the
// reconfigure fails.
func (h *harness) unplugRemoved(vm *simulator.VirtualMachine, spec *types.VirtualMachineConfigSpec) *taskFault {
	g := h.qmpGuest
	if g == nil || vm.Self != g.proxy {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, change := range spec.DeviceChange {
		ds := change.GetVirtualDeviceConfigSpec()
		if ds.Operation != types.VirtualDeviceConfigSpecOperationRemove || ds.Device == nil {
			continue
		}
		key := ds.Device.GetVirtualDevice().Key
		pd := g.plugged[key]
		if pd == nil {
			continue
		}
		if err := g.unplug(pd); err != nil {
			log.Printf("guest: %v", err)
			return newTaskFault(&types.InvalidDeviceSpec{DeviceIndex: int32(i)},
				"Device '%d' (%s) cannot be removed: %v", i, pd.file, err)
		}
		delete(g.plugged, key)
	}
	return nil
}

func (g *qmpGuest) unplug(pd *qmpDisk) error {
	if _, err := g.q.cmd("device_del", map[string]string{"id": pd.id}); err != nil {
		return err
	}
	if !g.q.waitDeleted(pd.id, qmpUnplugTimeout) {
		return fmt.Errorf("the guest did not release %s (%s) within %v", pd.id, pd.file, qmpUnplugTimeout)
	}
	if _, err := g.q.cmd("blockdev-del", map[string]string{"node-name": pd.node}); err != nil {
		return err
	}
	log.Printf("guest: %s (%s) unplugged", pd.id, pd.file)
	return nil
}

// syncQMPGuest runs after every successful reconfigure of the proxy: disks
// new on the proxy are plugged into the guest.
func (h *harness) syncQMPGuest(vm *simulator.VirtualMachine) {
	g := h.qmpGuest
	if g == nil || vm.Self != g.proxy {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	present := map[int32]bool{}
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		present[disk.Key] = true
		b := backingOf(disk)
		if g.own[disk.Key] || b == nil || g.plugged[disk.Key] != nil {
			continue
		}
		if err := g.plug(h, disk, b); err != nil {
			log.Printf("guest: cannot plug disk %d (%s): %v", disk.Key, b.FileName, err)
		}
	}
	for key, pd := range g.plugged {
		if !present[key] {
			if err := g.unplug(pd); err != nil {
				log.Printf("guest: %v", err)
				continue
			}
			delete(g.plugged, key)
		}
	}
}

func (g *qmpGuest) plug(h *harness, disk *types.VirtualDisk, b *types.VirtualDiskFlatVer2BackingInfo) error {
	flat := ""
	if d := h.diskByFile(b.FileName); d != nil {
		for _, f := range d.chain {
			if d.dsPath(f.rel) == b.FileName {
				flat = h.flatPath(d, f)
			}
		}
	}
	if flat == "" {
		return fmt.Errorf("no local file")
	}
	bus := disk.ControllerKey - 1000
	if bus < 0 || bus > 3 || disk.UnitNumber == nil {
		return fmt.Errorf("controller %d unit %v is not a SCSI slot", disk.ControllerKey, disk.UnitNumber)
	}
	readOnly := !writableMode(b.DiskMode)
	pd := &qmpDisk{id: fmt.Sprintf("ferry-disk%d", disk.Key), node: fmt.Sprintf("ferry-node%d", disk.Key), file: b.FileName}
	if _, err := g.q.cmd("blockdev-add", map[string]interface{}{
		"driver": "raw", "node-name": pd.node, "read-only": readOnly,
		"file": map[string]interface{}{"driver": "file", "filename": flat, "read-only": readOnly},
	}); err != nil {
		return err
	}
	args := map[string]interface{}{
		"driver": "scsi-hd", "id": pd.id, "drive": pd.node,
		"bus": fmt.Sprintf("scsi%d.0", bus), "scsi-id": *disk.UnitNumber, "lun": 0,
		"serial": strings.ToLower(strings.ReplaceAll(b.Uuid, "-", "")),
	}
	if wwn, ok := qmpWWN(b.Uuid); ok {
		args["wwn"] = wwn
	}
	if _, err := g.q.cmd("device_add", args); err != nil {
		g.q.cmd("blockdev-del", map[string]string{"node-name": pd.node})
		return err
	}
	g.plugged[disk.Key] = pd
	log.Printf("guest: disk %d (%s) plugged as %s on scsi%d.0 target %d (read-only %v)",
		disk.Key, b.FileName, pd.id, bus, *disk.UnitNumber, readOnly)
	return nil
}
