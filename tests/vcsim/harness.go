package main

// The harness: state kept beside the simulator's objects (disk chains,
// change tracking, disabled methods, injected faults) and the helpers that
// write it back into the simulator's VirtualMachine objects.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path"
	"sort"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type harness struct {
	// mu serializes every call the harness handles itself and every control
	// request; simulator objects are additionally guarded by the
	// simulator's per-object locks.
	mu sync.Mutex

	cfg    *config
	addr   *net.TCPAddr
	model  *simulator.Model
	svc    *simulator.Service
	client *vim25.Client // in-process, bypasses HTTP and sessions

	datacenter string
	cluster    string
	hosts      []hostInfo
	datastores map[string]*dsInfo // by name
	vms        map[string]*vmState
	vmOrder    []string
	byRef      map[types.ManagedObjectReference]*vmState

	disabled map[types.ManagedObjectReference][]disabledMethod
	faults   []*faultRule

	certDER  []byte
	certPath string

	guest *guest // --guest-root: the proxy's emulated guest, or nil
	// --guest-qmp: the proxy is a QEMU guest, or nil
	qmpGuest *qmpGuest
}

type hostInfo struct {
	name       string
	ref        types.ManagedObjectReference
	datastores []string
}

type dsInfo struct {
	name string
	dir  string // local directory backing the datastore
	ref  types.ManagedObjectReference
}

type vmState struct {
	name         string
	ref          types.ManagedObjectReference
	host         string
	biosUUID     string
	instanceUUID string
	vmx          string // datastore path of the .vmx
	disks        []*diskState
	nics         []nicInfo
}

type nicInfo struct {
	Key int32  `json:"key"`
	MAC string `json:"mac"`
}

type diskState struct {
	vm            *vmState
	key           int32
	label         string
	datastore     string
	dir           string // directory inside the datastore
	base          string // base descriptor name without .vmdk
	uuid          string
	capacity      int64
	mode          types.VirtualDiskMode
	controller    string // lsilogic, lsilogic-sas, pvscsi, ide
	controllerKey int32
	bus           int32
	unit          int32
	thick, eager  bool // provisioning its backing reports

	// chain holds the disk's files from the base (index 0) to the live top.
	// Every file is a full flat image: a snapshot freezes the top file and
	// continues on a sparse copy of it.
	chain []*diskFile

	// Change tracking: cbtEpoch is the UUID part of change IDs, empty while
	// tracking is off; states records the block fingerprints of the disk at
	// each change ID issued.
	cbtEpoch string
	cbtSeq   int
	states   map[string][]blockHash
	changeID string // backing.changeId of the live disk
}

type diskFile struct {
	rel      string // path inside the datastore, e.g. vm/vm-000001.vmdk
	snapshot *types.ManagedObjectReference
	orphan   bool   // its snapshot is gone but merging it was blocked
	changeID string // backing.changeId when frozen
	cid      uint32
}

type disabledMethod struct {
	method string
	source string
	reason string
}

func (d *diskState) dsPath(rel string) string { return fmt.Sprintf("[%s] %s", d.datastore, rel) }

func (d *diskState) top() *diskFile { return d.chain[len(d.chain)-1] }

func (h *harness) localPath(ds, rel string) string {
	return path.Join(h.datastores[ds].dir, rel)
}

func (h *harness) descPath(d *diskState, f *diskFile) string { return h.localPath(d.datastore, f.rel) }

func (h *harness) flatPath(d *diskState, f *diskFile) string {
	return h.localPath(d.datastore, flatName(f.rel))
}

func (d *diskState) independent() bool {
	return d.mode == types.VirtualDiskModeIndependent_persistent || d.mode == types.VirtualDiskModeIndependent_nonpersistent
}

// internalContext is what the simulator's own methods get when the harness
// calls them directly rather than through SOAP dispatch. caller is the
// object whose lock the harness holds, as dispatch would, so the
// simulator's ctx.WithLock does not take it a second time.
func (h *harness) internalContext(caller types.ManagedObjectReference) *simulator.Context {
	return &simulator.Context{
		Context: context.Background(),
		Map:     simulator.Map,
		Caller:  &caller,
		Session: &simulator.Session{
			UserSession: types.UserSession{UserName: h.cfg.username, Key: "ferry-vcsim-internal"},
			Registry:    simulator.NewRegistry(),
		},
	}
}

func (h *harness) vmObject(ref types.ManagedObjectReference) *simulator.VirtualMachine {
	vm, _ := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	return vm
}

// snapshotsOf lists the VM's snapshot objects in creation order.
func snapshotsOf(vm *simulator.VirtualMachine) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	if vm.Snapshot == nil {
		return nil
	}
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(tree []types.VirtualMachineSnapshotTree) {
		for _, t := range tree {
			out = append(out, t.Snapshot)
			walk(t.ChildSnapshotList)
		}
	}
	walk(vm.Snapshot.RootSnapshotList)
	return out
}

// backing builds the backing of chain[i] with its parents, the way vSphere
// shows a snapshot chain: fileName of the file itself, parent pointing
// down to the base.
func (h *harness) backing(d *diskState, i int) *types.VirtualDiskFlatVer2BackingInfo {
	f := d.chain[i]
	ds := h.datastores[d.datastore].ref
	b := &types.VirtualDiskFlatVer2BackingInfo{
		VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
			FileName:  d.dsPath(f.rel),
			Datastore: &ds,
		},
		DiskMode:        string(d.mode),
		Split:           types.NewBool(false),
		WriteThrough:    types.NewBool(false),
		ThinProvisioned: types.NewBool(!d.thick),
		EagerlyScrub:    types.NewBool(d.thick && d.eager),
		DigestEnabled:   types.NewBool(false),
		Uuid:            d.uuid,
		ContentId:       fmt.Sprintf("%032x", stableBytes(fmt.Sprintf("%s/%08x", d.uuid, f.cid), 16)),
	}
	if i == len(d.chain)-1 {
		b.ChangeId = d.changeID
	} else {
		b.ChangeId = f.changeID
	}
	if i > 0 {
		b.Parent = h.backing(d, i-1)
	}
	return b
}

// withDiskBacking returns a copy of a device list in which the disk with
// the given key has a new backing; other devices are shared.
func withDiskBacking(devices []types.BaseVirtualDevice, key int32, b *types.VirtualDiskFlatVer2BackingInfo) []types.BaseVirtualDevice {
	out := make([]types.BaseVirtualDevice, len(devices))
	copy(out, devices)
	for i, dev := range out {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok || disk.Key != key {
			continue
		}
		c := *disk
		c.Backing = b
		out[i] = &c
	}
	return out
}

// syncVM writes the harness's view of a VM's disks into the simulator: the
// live devices, the frozen devices of every snapshot, and the file layout.
// The caller holds h.mu and no simulator lock.
func (h *harness) syncVM(st *vmState) {
	vm := h.vmObject(st.ref)
	if vm == nil {
		return
	}
	simulator.Map.WithLock(vm, func() {
		devices := vm.Config.Hardware.Device
		for _, d := range st.disks {
			devices = withDiskBacking(devices, d.key, h.backing(d, len(d.chain)-1))
		}
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
		vm.RefreshStorageInfo(h.internalContext(vm.Self), &types.RefreshStorageInfo{This: vm.Self})
	})

	for _, ref := range snapshotsOf(vm) {
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok {
			continue
		}
		simulator.Map.WithLock(snap, func() {
			devices := snap.Config.Hardware.Device
			for _, d := range st.disks {
				i := d.frozenIndex(ref)
				if i < 0 {
					// Independent disks are not part of snapshots: the
					// snapshot refers to the live file.
					i = len(d.chain) - 1
				}
				devices = withDiskBacking(devices, d.key, h.backing(d, i))
			}
			simulator.Map.Update(snap, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
		})
	}
}

// frozenIndex returns the chain index of the file the snapshot froze, or -1.
func (d *diskState) frozenIndex(snap types.ManagedObjectReference) int {
	for i, f := range d.chain {
		if f.snapshot != nil && *f.snapshot == snap {
			return i
		}
	}
	return -1
}

// fileUsers lists the VMs, other than except, that have a disk whose
// backing chain includes the datastore path name.
func fileUsers(name string, except types.ManagedObjectReference) []string {
	var users []string
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok || vm.Self == except || vm.Config == nil {
			continue
		}
		for _, dev := range vm.Config.Hardware.Device {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			for b := backingOf(disk); b != nil; b = b.Parent {
				if b.FileName == name {
					users = append(users, vm.Name)
				}
			}
		}
	}
	sort.Strings(users)
	return users
}

func backingOf(disk *types.VirtualDisk) *types.VirtualDiskFlatVer2BackingInfo {
	b, _ := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	return b
}

// diskByFile finds the harness disk that has name in its chain.
func (h *harness) diskByFile(name string) *diskState {
	for _, vm := range h.vms {
		for _, d := range vm.disks {
			for _, f := range d.chain {
				if d.dsPath(f.rel) == name {
					return d
				}
			}
		}
	}
	return nil
}

func (h *harness) setCertificate(cert tls.Certificate, certPath string) {
	h.certDER = cert.Certificate[0]
	h.certPath = certPath
}

func (h *harness) apiType() string {
	if h.cfg.esx {
		return "HostAgent"
	}
	return "VirtualCenter"
}

func (h *harness) hostPort() string {
	return net.JoinHostPort(h.addr.IP.String(), fmt.Sprint(h.addr.Port))
}

func (h *harness) sdkURL() string { return "https://" + h.hostPort() + "/sdk" }

// entityOf returns the managed entity for ref, or nil.
func entityOf(ref types.ManagedObjectReference) mo.Entity {
	e, _ := simulator.Map.Get(ref).(mo.Entity)
	return e
}
