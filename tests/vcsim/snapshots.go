package main

// Snapshots with real disk chains, consolidation, and the ReconfigVM_Task
// additions (change tracking, device checks, disk UUIDs).

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// lockedError reports a disk file another VM has open.
type lockedError struct {
	file  string
	users []string
}

func (e *lockedError) Error() string {
	return fmt.Sprintf("Unable to access file %s since it is locked (in use by %s)", e.file, strings.Join(e.users, ", "))
}

func (e *lockedError) fault() *taskFault {
	return &taskFault{fault: &types.FileLocked{FileFault: types.FileFault{File: e.file}}, msg: e.Error()}
}

func fileFault(file string, err error) *taskFault {
	return newTaskFault(&types.FileFault{File: file}, "Error caused by file %s: %v", file, err)
}

func (h *harness) createSnapshot(c *soapCall) soapReply {
	st, vm := h.byRef[c.this], h.vmObject(c.this)
	if st == nil || vm == nil {
		return soapReply{pass: true}
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.CreateSnapshot_Task)
	return h.runTask(vm, "createSnapshotTask", func() (types.AnyType, *taskFault) {
		var body soap.HasFault
		simulator.Map.WithLock(vm, func() { body = vm.CreateSnapshotTask(req) })
		res, tf := simulatorTaskResult(body)
		if tf != nil {
			return nil, tf
		}
		snap := res.(types.ManagedObjectReference)
		if tf := h.freezeDisks(st, snap); tf != nil {
			h.syncVM(st)
			return nil, tf
		}
		if err := h.rebuildSANFor(st); err != nil {
			h.syncVM(st)
			return nil, fileFault(c.this.Value, err)
		}
		h.syncVM(st)
		return snap, nil
	})
}

// freezeDisks makes snap the owner of each disk's current top file and
// continues the disk on a new delta holding a sparse copy of it, so later
// writes to the live disk leave the frozen file alone.
func (h *harness) freezeDisks(st *vmState, snap types.ManagedObjectReference) *taskFault {
	for _, d := range st.disks {
		if d.independent() {
			continue
		}
		top := d.top()
		// Like ESXi, take the lowest free number: a VM whose snapshots are
		// consolidated after every backup is back on -000001 each time.
		var rel string
		for n := 1; ; n++ {
			rel = path.Join(d.dir, fmt.Sprintf("%s-%06d.vmdk", d.base, n))
			if _, err := os.Stat(h.localPath(d.datastore, rel)); os.IsNotExist(err) {
				break
			}
		}
		next := &diskFile{rel: rel, cid: newCID()}
		if err := sparseCopy(h.flatPath(d, top), h.localPath(d.datastore, flatName(rel)), d.capacity); err != nil {
			return fileFault(d.dsPath(rel), err)
		}
		top.snapshot = &snap
		if d.cbtEpoch != "" {
			id, err := h.issueChangeID(d, h.flatPath(d, top))
			if err != nil {
				return fileFault(d.dsPath(top.rel), err)
			}
			top.changeID = id
			d.changeID = id
		}
		d.chain = append(d.chain, next)
		if err := writeDescriptor(h.descPath(d, next), h.descriptorFor(d, len(d.chain)-1)); err != nil {
			return fileFault(d.dsPath(rel), err)
		}
	}
	return nil
}

// newCID returns a random descriptor content ID, which changes whenever a
// disk's contents may have.
func newCID() uint32 {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return binary.LittleEndian.Uint32(b[:])
}

// mergeDown folds chain[i+1] into chain[i]: the parent's file takes the
// child's contents and role, and the child's files go away. With full-image
// files the merge is a rename. Either file being open in another VM blocks
// it, as ESXi's file locks do.
func (h *harness) mergeDown(d *diskState, i int) error {
	parent, child := d.chain[i], d.chain[i+1]
	for _, f := range []*diskFile{parent, child} {
		name := d.dsPath(f.rel)
		if users := fileUsers(name, d.vm.ref); len(users) > 0 {
			return &lockedError{file: name, users: users}
		}
	}
	if err := os.Rename(h.flatPath(d, child), h.flatPath(d, parent)); err != nil {
		return err
	}
	os.Remove(h.descPath(d, child))
	parent.snapshot = child.snapshot
	parent.orphan = child.orphan
	parent.changeID = child.changeID
	parent.cid = child.cid
	d.chain = append(d.chain[:i+1], d.chain[i+2:]...)
	for j := i; j < len(d.chain) && j <= i+1; j++ {
		if err := writeDescriptor(h.descPath(d, d.chain[j]), h.descriptorFor(d, j)); err != nil {
			return err
		}
	}
	return nil
}

// dropSnapshots updates the disk chains after the simulator removed the
// given snapshots (listed oldest first). With consolidate each frozen file
// is merged with its child; a merge blocked by a lock leaves the file as an
// orphan and the VM in need of consolidation, like vSphere does when a
// backup proxy still has the disk attached.
func (h *harness) dropSnapshots(st *vmState, snaps []types.ManagedObjectReference, consolidate bool) {
	need := false
	for k := len(snaps) - 1; k >= 0; k-- {
		for _, d := range st.disks {
			i := d.frozenIndex(snaps[k])
			if i < 0 {
				continue
			}
			f := d.chain[i]
			f.snapshot = nil
			if !consolidate {
				f.orphan = true
				need = true
				continue
			}
			if err := h.mergeDown(d, i); err != nil {
				f.orphan = true
				need = true
			}
		}
	}
	if need {
		h.setConsolidationNeeded(st.ref, true)
	}
}

func (h *harness) setConsolidationNeeded(ref types.ManagedObjectReference, need bool) {
	vm := h.vmObject(ref)
	if vm == nil {
		return
	}
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.consolidationNeeded", Val: need},
			{Name: "summary.runtime.consolidationNeeded", Val: need},
		})
	})
}

// subtree lists snap and, with children, its descendants, oldest first.
func subtree(vm *simulator.VirtualMachine, snap types.ManagedObjectReference, children bool) []types.ManagedObjectReference {
	if vm.Snapshot == nil {
		return nil
	}
	var out []types.ManagedObjectReference
	var walk func([]types.VirtualMachineSnapshotTree, bool)
	walk = func(tree []types.VirtualMachineSnapshotTree, inside bool) {
		for _, t := range tree {
			hit := t.Snapshot == snap || inside
			if hit {
				out = append(out, t.Snapshot)
			}
			walk(t.ChildSnapshotList, hit && children)
		}
	}
	walk(vm.Snapshot.RootSnapshotList, false)
	return out
}

func (h *harness) snapshotOwner(ref types.ManagedObjectReference) (*simulator.VirtualMachineSnapshot, *vmState, *simulator.VirtualMachine) {
	snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return nil, nil, nil
	}
	return snap, h.byRef[snap.Vm], h.vmObject(snap.Vm)
}

func (h *harness) removeSnapshot(c *soapCall) soapReply {
	snap, st, vm := h.snapshotOwner(c.this)
	if snap == nil || st == nil || vm == nil {
		return soapReply{pass: true}
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.RemoveSnapshot_Task)
	gone := subtree(vm, c.this, req.RemoveChildren)
	consolidate := (req.Consolidate == nil || *req.Consolidate) && !c.leaveConsolidation
	return h.runTask(snap, "removeSnapshotTask", func() (types.AnyType, *taskFault) {
		var body soap.HasFault
		simulator.Map.WithLock(snap, func() { body = snap.RemoveSnapshotTask(h.internalContext(snap.Self), req) })
		if _, tf := simulatorTaskResult(body); tf != nil {
			return nil, tf
		}
		h.dropSnapshots(st, gone, consolidate)
		h.syncVM(st)
		return nil, nil
	})
}

func (h *harness) removeAllSnapshots(c *soapCall) soapReply {
	st, vm := h.byRef[c.this], h.vmObject(c.this)
	if st == nil || vm == nil {
		return soapReply{pass: true}
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.RemoveAllSnapshots_Task)
	gone := snapshotsOf(vm)
	consolidate := req.Consolidate == nil || *req.Consolidate
	return h.runTask(vm, "removeAllSnapshotsTask", func() (types.AnyType, *taskFault) {
		var body soap.HasFault
		simulator.Map.WithLock(vm, func() { body = vm.RemoveAllSnapshotsTask(h.internalContext(vm.Self), req) })
		if _, tf := simulatorTaskResult(body); tf != nil {
			return nil, tf
		}
		h.dropSnapshots(st, gone, consolidate)
		h.syncVM(st)
		return nil, nil
	})
}

// revertDisks puts the frozen contents of snap back into each live disk.
// Only the newest snapshot can be reverted to: going further back would
// branch the chain, which the harness does not model.
func (h *harness) revertDisks(st *vmState, snap types.ManagedObjectReference) *taskFault {
	for _, d := range st.disks {
		if d.independent() {
			continue
		}
		i := d.frozenIndex(snap)
		if i < 0 {
			continue
		}
		if i != len(d.chain)-2 {
			return newTaskFault(&types.NotSupported{}, "ferry-vcsim reverts to the newest snapshot only")
		}
	}
	for _, d := range st.disks {
		i := d.frozenIndex(snap)
		if d.independent() || i < 0 {
			continue
		}
		if err := sparseCopy(h.flatPath(d, d.chain[i]), h.flatPath(d, d.top()), d.capacity); err != nil {
			return fileFault(d.dsPath(d.top().rel), err)
		}
	}
	return nil
}

func (h *harness) revertToSnapshot(c *soapCall) soapReply {
	snap, st, vm := h.snapshotOwner(c.this)
	if snap == nil || st == nil || vm == nil {
		return soapReply{pass: true}
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.RevertToSnapshot_Task)
	return h.runTask(snap, "revertToSnapshotTask", func() (types.AnyType, *taskFault) {
		if tf := h.revertDisks(st, c.this); tf != nil {
			return nil, tf
		}
		var body soap.HasFault
		simulator.Map.WithLock(snap, func() { body = snap.RevertToSnapshotTask(req) })
		if _, tf := simulatorTaskResult(body); tf != nil {
			return nil, tf
		}
		h.syncVM(st)
		return nil, nil
	})
}

func (h *harness) revertToCurrentSnapshot(c *soapCall) soapReply {
	st, vm := h.byRef[c.this], h.vmObject(c.this)
	if st == nil || vm == nil {
		return soapReply{pass: true}
	}
	if vm.Snapshot == nil || vm.Snapshot.CurrentSnapshot == nil {
		return faultReply(&types.NotFound{}, "snapshot not found")
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.RevertToCurrentSnapshot_Task)
	current := *vm.Snapshot.CurrentSnapshot
	return h.runTask(vm, "revertToCurrentSnapshotTask", func() (types.AnyType, *taskFault) {
		if tf := h.revertDisks(st, current); tf != nil {
			return nil, tf
		}
		var body soap.HasFault
		simulator.Map.WithLock(vm, func() { body = vm.RevertToCurrentSnapshotTask(req) })
		if _, tf := simulatorTaskResult(body); tf != nil {
			return nil, tf
		}
		h.syncVM(st)
		return nil, nil
	})
}

func (h *harness) consolidateVMDisks(c *soapCall) soapReply {
	vm := h.vmObject(c.this)
	if vm == nil {
		return soapReply{pass: true}
	}
	st := h.byRef[c.this]
	return h.runTask(vm, "consolidateVMDisksTask", func() (types.AnyType, *taskFault) {
		if st != nil {
			defer h.syncVM(st)
			for _, d := range st.disks {
				for i := len(d.chain) - 2; i >= 0; i-- {
					if !d.chain[i].orphan {
						continue
					}
					if err := h.mergeDown(d, i); err != nil {
						if le, ok := err.(*lockedError); ok {
							return nil, le.fault()
						}
						return nil, fileFault(d.dsPath(d.chain[i].rel), err)
					}
				}
			}
		}
		h.setConsolidationNeeded(c.this, false)
		return nil, nil
	})
}

func (h *harness) reconfigVM(c *soapCall) soapReply {
	vm := h.vmObject(c.this)
	if vm == nil {
		return soapReply{pass: true}
	}
	st := h.byRef[c.this]
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.ReconfigVM_Task)
	return h.runTask(vm, "reconfigVMTask", func() (types.AnyType, *taskFault) {
		if tf := h.checkDeviceChanges(vm, &req.Spec); tf != nil {
			return nil, tf
		}
		if tf := h.unplugRemoved(vm, &req.Spec); tf != nil {
			return nil, tf
		}
		wasTracking := trackingEnabled(vm.Config)
		cbt := req.Spec.ChangeTrackingEnabled
		toggled := cbt != nil && *cbt != wasTracking
		if toggled && len(snapshotsOf(vm)) > 0 {
			return nil, newTaskFault(&types.InvalidState{},
				"Cannot change the change tracking state of virtual machine %s: it has snapshots", vm.Name)
		}
		var body soap.HasFault
		simulator.Map.WithLock(vm, func() { body = vm.ReconfigVMTask(h.internalContext(vm.Self), req) })
		if _, tf := simulatorTaskResult(body); tf != nil {
			return nil, tf
		}
		if st != nil && toggled {
			if *cbt {
				if err := h.enableTracking(st); err != nil {
					return nil, newTaskFault(&types.FileFault{}, "enable change tracking: %v", err)
				}
			} else {
				h.disableTracking(st)
			}
		}
		h.fixDiskUUIDs(vm)
		h.fixControllers(vm.Self)
		if st != nil {
			h.syncVM(st)
		}
		h.syncProxy(vm)
		h.syncQMPGuest(vm)
		return nil, nil
	})
}

func isSCSIController(dev types.BaseVirtualDevice) bool {
	_, ok := dev.(types.BaseVirtualSCSIController)
	return ok
}

func writableMode(mode string) bool {
	return mode == "" || mode == string(types.VirtualDiskModePersistent) ||
		mode == string(types.VirtualDiskModeIndependent_persistent)
}

// checkDeviceChanges adds the checks a real host makes and the simulator
// skips (or panics on): the disk's datastore must be mounted by the VM's
// host, the controller must exist, IDE does not hot-plug, SCSI unit 7
// belongs to the controller, a slot holds one device, and a disk file
// another powered-on VM has open cannot be attached (its live disk at all,
// a frozen parent only non-persistently).
func (h *harness) checkDeviceChanges(vm *simulator.VirtualMachine, spec *types.VirtualMachineConfigSpec) *taskFault {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	for i, change := range spec.DeviceChange {
		ds := change.GetVirtualDeviceConfigSpec()
		if ds.Operation != types.VirtualDeviceConfigSpecOperationAdd || ds.Device == nil {
			continue
		}
		disk, ok := ds.Device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		invalid := newTaskFault(&types.InvalidDeviceSpec{DeviceIndex: int32(i)}, "Invalid configuration for device '%d'.", i)
		dev := disk.GetVirtualDevice()
		if b := backingOf(disk); b != nil && !h.hostMounts(vm, b.FileName) {
			// A host resolves datastore paths on the datastores it mounts:
			// the proxy must sit on a host that sees the disk's datastore.
			return newTaskFault(&types.FileNotFound{FileFault: types.FileFault{File: b.FileName}}, "File %s was not found", b.FileName)
		}
		ctrl := devices.FindByKey(dev.ControllerKey)
		if ctrl == nil {
			for _, other := range spec.DeviceChange {
				od := other.GetVirtualDeviceConfigSpec().Device
				if od != nil && od.GetVirtualDevice().Key == dev.ControllerKey {
					ctrl = od
				}
			}
		}
		if _, ok := ctrl.(types.BaseVirtualController); !ok {
			return invalid
		}
		if _, ide := ctrl.(*types.VirtualIDEController); ide && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			return newTaskFault(&types.DeviceHotPlugNotSupported{InvalidDeviceSpec: types.InvalidDeviceSpec{DeviceIndex: int32(i)}},
				"Device '%d': IDE devices cannot be hot-added to a powered-on virtual machine", i)
		}
		if dev.UnitNumber != nil {
			unit := *dev.UnitNumber
			// vSphere reserves unit 7 on every SCSI controller for the
			// controller itself.
			if isSCSIController(ctrl) && unit == 7 {
				return invalid
			}
			for _, other := range devices {
				o := other.GetVirtualDevice()
				if o.ControllerKey == dev.ControllerKey && o.UnitNumber != nil && *o.UnitNumber == unit {
					return invalid
				}
			}
		}
		if ds.FileOperation != "" {
			continue
		}
		b := backingOf(disk)
		if b == nil {
			continue
		}
		owner := h.diskByFile(b.FileName)
		if owner == nil || owner.vm.ref == vm.Self {
			continue
		}
		ownerVM := h.vmObject(owner.vm.ref)
		if ownerVM == nil || ownerVM.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			continue
		}
		isTop := owner.dsPath(owner.top().rel) == b.FileName
		if isTop || writableMode(b.DiskMode) {
			le := &lockedError{file: b.FileName, users: []string{owner.vm.name}}
			return le.fault()
		}
	}
	return nil
}

// hostMounts reports whether the VM's host mounts the datastore of the
// datastore path name ("[ds2] x.vmdk"); names without a datastore pass.
func (h *harness) hostMounts(vm *simulator.VirtualMachine, name string) bool {
	var p object.DatastorePath
	if !p.FromString(name) || p.Datastore == "" || vm.Runtime.Host == nil {
		return true
	}
	host, ok := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	if !ok {
		return true
	}
	for _, ref := range host.Datastore {
		if ds, ok := simulator.Map.Get(ref).(*simulator.Datastore); ok && ds.Name == p.Datastore {
			return true
		}
	}
	return false
}

// localFile maps "[ds] rel" to its local path when ds is one of ours.
func (h *harness) localFile(name string) (string, bool) {
	var p object.DatastorePath
	if !p.FromString(name) {
		return "", false
	}
	ds, ok := h.datastores[p.Datastore]
	if !ok {
		return "", false
	}
	return path.Join(ds.dir, p.Path), true
}

// fixDiskUUIDs gives every disk of vm a backing.uuid, as vSphere does: a
// file from an inventory disk keeps that disk's UUID, capacity and parent
// chain (so a disk hot-added to the proxy looks like the source disk), a new
// disk the simulator created empty gets a descriptor, a sparse extent and a
// fresh UUID.
func (h *harness) fixDiskUUIDs(vm *simulator.VirtualMachine) {
	simulator.Map.WithLock(vm, func() {
		devices := vm.Config.Hardware.Device
		changed := false
		for _, dev := range devices {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			b := backingOf(disk)
			if b == nil {
				continue
			}
			d := h.diskByFile(b.FileName)
			if d != nil && d.vm.ref == vm.Self {
				continue // the VM's own disk: syncVM keeps it
			}
			nb := *b
			nd := *disk
			switch {
			case d != nil:
				nb.Uuid = d.uuid
				if nb.Parent == nil {
					for i, f := range d.chain {
						if d.dsPath(f.rel) == b.FileName && i > 0 {
							nb.Parent = h.backing(d, i-1)
						}
					}
				}
				if nd.CapacityInBytes == 0 && nd.CapacityInKB == 0 {
					nd.CapacityInBytes = d.capacity
					nd.CapacityInKB = d.capacity / 1024
				}
			case b.Uuid == "":
				desc, ok := h.localFile(b.FileName)
				if !ok {
					continue
				}
				nb.Uuid = h.initDiskFiles(vm, disk, b.FileName, desc)
			}
			if nb.Uuid == b.Uuid && nb.Parent == b.Parent && nd.CapacityInBytes == disk.CapacityInBytes {
				continue
			}
			nd.Backing = &nb
			for i := range devices {
				if devices[i].GetVirtualDevice().Key == disk.Key {
					cp := make([]types.BaseVirtualDevice, len(devices))
					copy(cp, devices)
					cp[i] = &nd
					devices = cp
				}
			}
			changed = true
		}
		if changed {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
		}
	})
}

// initDiskFiles returns the UUID of the disk whose descriptor is at desc,
// first writing a descriptor and a sparse extent of the disk's capacity
// when the simulator left the descriptor empty.
func (h *harness) initDiskFiles(vm *simulator.VirtualMachine, disk *types.VirtualDisk, name, desc string) string {
	data, err := os.ReadFile(desc)
	if err != nil {
		return ""
	}
	if len(data) > 0 {
		return uuidFromDescriptor(string(data))
	}
	capacity := disk.CapacityInBytes
	if capacity == 0 {
		capacity = disk.CapacityInKB * 1024
	}
	uuid := diskUUID(fmt.Sprintf("%s/%s/%d", vm.Self.Value, name, disk.Key))
	flat := flatName(desc)
	if f, err := os.OpenFile(flat, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		f.Truncate(capacity)
		f.Close()
	}
	writeDescriptor(desc, descriptorInfo{
		capacity:    capacity,
		flatName:    path.Base(flat),
		uuid:        uuid,
		adapterType: "lsilogic",
		cid:         uint32(stableSeed(uuid)),
	})
	return uuid
}

// sortedVMs lists the harness VMs in inventory order.
func (h *harness) sortedVMs() []*vmState {
	out := make([]*vmState, 0, len(h.vmOrder))
	for _, n := range h.vmOrder {
		out = append(out, h.vms[n])
	}
	return out
}

// destroyVM lets the simulator destroy an inventory VM (which, like vSphere,
// deletes every disk attached to it) and forgets the VM's disk chains.
func (h *harness) destroyVM(c *soapCall) soapReply {
	st, vm := h.byRef[c.this], h.vmObject(c.this)
	if st == nil || vm == nil {
		return soapReply{pass: true}
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.Destroy_Task)
	return h.runTask(vm, "destroyTask", func() (types.AnyType, *taskFault) {
		var body soap.HasFault
		simulator.Map.WithLock(vm, func() { body = vm.DestroyTask(h.internalContext(vm.Self), req) })
		if _, tf := simulatorTaskResult(body); tf != nil {
			return nil, tf
		}
		delete(h.vms, st.name)
		delete(h.byRef, st.ref)
		for i, n := range h.vmOrder {
			if n == st.name {
				h.vmOrder = append(h.vmOrder[:i], h.vmOrder[i+1:]...)
				break
			}
		}
		delete(h.disabled, st.ref)
		return nil, nil
	})
}
