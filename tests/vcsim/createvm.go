package main

// CreateVM_Task as vCenter answers it for a restore: the new VM's disks
// (fileOperation "create") become real descriptor + flat file pairs on the
// datastore, empty (sparse) and of the requested capacity, and the VM is
// tracked by the harness like the inventory's own VMs, so it can be written
// through /folder, snapshotted, tracked by CBT and backed up again.

import (
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// maxCreateDisks bounds the disks one CreateVM_Task may create here.
const maxCreateDisks = 64

// controllerKind names a controller device as diskState.controller does.
func controllerKind(dev types.BaseVirtualDevice) string {
	switch dev.(type) {
	case *types.ParaVirtualSCSIController:
		return "pvscsi"
	case *types.VirtualLsiLogicSASController:
		return "lsilogic-sas"
	case *types.VirtualLsiLogicController:
		return "lsilogic"
	case *types.VirtualBusLogicController:
		return "buslogic"
	case *types.VirtualIDEController:
		return "ide"
	case *types.VirtualAHCIController:
		return "sata"
	case *types.VirtualNVMEController:
		return "nvme"
	}
	return ""
}

func (h *harness) createVMTask(c *soapCall) soapReply {
	if c.this.Type != "Folder" {
		return soapReply{pass: true}
	}
	folder, ok := simulator.Map.Get(c.this).(*simulator.Folder)
	if !ok {
		return soapReply{pass: true}
	}
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.CreateVM_Task)
	spec := &req.Config
	// vSphere keeps '%', '/' and '\' of an entity's name escaped, in the
	// name the API returns and in the VM's folder on the datastore.
	spec.Name = escapeEntityName(spec.Name)
	return h.runTask(folder, "createVm", func() (types.AnyType, *taskFault) {
		for _, e := range simulator.Map.All("VirtualMachine") {
			if e.Entity().Name == spec.Name {
				return nil, newTaskFault(&types.DuplicateName{Name: spec.Name, Object: e.Reference()},
					"The name '%s' already exists.", spec.Name)
			}
		}
		if spec.Files == nil {
			return nil, newTaskFault(&types.InvalidArgument{InvalidProperty: "config.files"},
				"A specified parameter was not correct: config.files")
		}
		var vmx object.DatastorePath
		if !vmx.FromString(spec.Files.VmPathName) || h.datastores[vmx.Datastore] == nil {
			return nil, newTaskFault(&types.InvalidDatastorePath{DatastorePath: spec.Files.VmPathName},
				"Invalid datastore path '%s'.", spec.Files.VmPathName)
		}
		vmx.Path = path.Join(spec.Name, spec.Name+".vmx")
		spec.Files.VmPathName = vmx.String()

		// As vCenter: a NIC on a network the inventory lacks is an
		// invalid device (the simulator would dereference nothing).
		for i, ch := range spec.DeviceChange {
			card, ok := ch.GetVirtualDeviceConfigSpec().Device.(types.BaseVirtualEthernetCard)
			if !ok {
				continue
			}
			b, ok := card.GetVirtualEthernetCard().Backing.(*types.VirtualEthernetCardNetworkBackingInfo)
			if ok && !h.hasNetwork(b.DeviceName) {
				return nil, newTaskFault(&types.InvalidDeviceSpec{DeviceIndex: int32(i)},
					"Invalid configuration for device '%d': no network named '%s'.", i, b.DeviceName)
			}
		}
		st := &vmState{name: spec.Name, vmx: vmx.String()}
		controllers := map[int32]types.BaseVirtualDevice{}
		for _, ch := range spec.DeviceChange {
			dev := ch.GetVirtualDeviceConfigSpec().Device
			if controllerKind(dev) != "" {
				controllers[dev.GetVirtualDevice().Key] = dev
			}
		}
		perDatastore := map[string]int{}
		var created []string
		fail := func(tf *taskFault) (types.AnyType, *taskFault) {
			for _, p := range created {
				os.Remove(p)
			}
			return nil, tf
		}
		for i, ch := range spec.DeviceChange {
			ds := ch.GetVirtualDeviceConfigSpec()
			disk, ok := ds.Device.(*types.VirtualDisk)
			if !ok || ds.FileOperation != types.VirtualDeviceConfigSpecFileOperationCreate {
				continue
			}
			if len(st.disks) == maxCreateDisks {
				return fail(newTaskFault(&types.InvalidDeviceSpec{DeviceIndex: int32(i)}, "ferry-vcsim creates at most %d disks", maxCreateDisks))
			}
			b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			capacity := disk.CapacityInBytes
			if capacity == 0 {
				capacity = disk.CapacityInKB * 1024
			}
			if !ok || disk.UnitNumber == nil || capacity <= 0 || capacity%sectorSize != 0 || capacity > 64<<30 {
				return fail(newTaskFault(&types.InvalidDeviceSpec{DeviceIndex: int32(i)},
					"Invalid configuration for device '%d': a new flat disk needs a backing, a unit and a capacity of whole sectors up to 64 GiB", i))
			}
			var where object.DatastorePath
			if !where.FromString(b.FileName) || where.Datastore == "" {
				where.Datastore = vmx.Datastore
			}
			dsi := h.datastores[where.Datastore]
			if dsi == nil {
				return fail(newTaskFault(&types.InvalidDatastorePath{DatastorePath: b.FileName}, "Invalid datastore path '%s'.", b.FileName))
			}
			base := spec.Name
			if n := perDatastore[where.Datastore]; n > 0 {
				base = fmt.Sprintf("%s_%d", spec.Name, n)
			}
			perDatastore[where.Datastore]++
			ctrl := controllers[disk.ControllerKey]
			kind := "lsilogic"
			var bus int32
			if ctrl != nil {
				kind = controllerKind(ctrl)
				if sc, ok := ctrl.(types.BaseVirtualController); ok {
					bus = sc.GetVirtualController().BusNumber
				}
			}
			mode := types.VirtualDiskMode(b.DiskMode)
			if mode == "" {
				mode = types.VirtualDiskModePersistent
			}
			thick := b.ThinProvisioned == nil || !*b.ThinProvisioned
			d := &diskState{
				vm:         st,
				label:      fmt.Sprintf("Hard disk %d", len(st.disks)+1),
				datastore:  where.Datastore,
				dir:        spec.Name,
				base:       base,
				uuid:       diskUUID(fmt.Sprintf("%s/created/%d", spec.Name, len(st.disks))),
				capacity:   capacity,
				mode:       mode,
				controller: kind,
				bus:        bus,
				unit:       *disk.UnitNumber,
				thick:      thick,
				eager:      thick && b.EagerlyScrub != nil && *b.EagerlyScrub,
				states:     map[string][]blockHash{},
			}
			f := &diskFile{rel: path.Join(spec.Name, base+".vmdk"), cid: uint32(stableSeed(d.uuid))}
			d.chain = []*diskFile{f}
			if err := os.MkdirAll(path.Join(dsi.dir, spec.Name), 0o755); err != nil {
				return fail(newTaskFault(&types.CannotCreateFile{FileFault: types.FileFault{File: d.dsPath(f.rel)}}, "%v", err))
			}
			flat := h.flatPath(d, f)
			if _, err := os.Stat(flat); err == nil {
				return fail(newTaskFault(&types.FileAlreadyExists{FileFault: types.FileFault{File: d.dsPath(flatName(f.rel))}},
					"Cannot complete the operation because the file or folder %s already exists", d.dsPath(flatName(f.rel))))
			}
			// A new disk reads as zeros: a sparse file of its capacity.
			fd, err := os.OpenFile(flat, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				created = append(created, flat)
				err = fd.Truncate(capacity)
				if cerr := fd.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil {
				err = writeDescriptor(h.descPath(d, f), h.descriptorFor(d, 0))
				created = append(created, h.descPath(d, f))
			}
			if err != nil {
				return fail(newTaskFault(&types.CannotCreateFile{FileFault: types.FileFault{File: d.dsPath(f.rel)}}, "%v", err))
			}
			st.disks = append(st.disks, d)
			ds.FileOperation = ""
			b.FileName = d.dsPath(f.rel)
			b.Uuid = d.uuid
			disk.CapacityInBytes = capacity
			disk.CapacityInKB = capacity / 1024
		}

		var body soap.HasFault
		simulator.Map.WithLock(folder, func() { body = folder.CreateVMTask(h.internalContext(folder.Self), req) })
		res, tf := simulatorTaskResult(body)
		if tf != nil {
			return fail(tf)
		}
		ref, ok := res.(types.ManagedObjectReference)
		vm := h.vmObject(ref)
		if !ok || vm == nil {
			return fail(newTaskFault(&types.SystemError{Reason: "no VM"}, "the simulator created no VM"))
		}

		// The keys the simulator gave the new disks, found by file name.
		for _, dev := range vm.Config.Hardware.Device {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			b := backingOf(disk)
			for _, d := range st.disks {
				if b != nil && b.FileName == d.dsPath(d.chain[0].rel) {
					d.key = disk.Key
					d.controllerKey = disk.ControllerKey
				}
			}
		}
		st.ref = ref
		st.biosUUID = vm.Config.Uuid
		st.instanceUUID = vm.Config.InstanceUuid
		if vm.Runtime.Host != nil {
			for _, hi := range h.hosts {
				if hi.ref == *vm.Runtime.Host {
					st.host = hi.name
				}
			}
		}
		for _, dev := range vm.Config.Hardware.Device {
			if nic, ok := dev.(types.BaseVirtualEthernetCard); ok {
				card := nic.GetVirtualEthernetCard()
				st.nics = append(st.nics, nicInfo{Key: card.Key, MAC: strings.ToLower(card.MacAddress)})
			}
		}
		h.vms[st.name] = st
		h.vmOrder = append(h.vmOrder, st.name)
		h.byRef[st.ref] = st
		h.fixControllers(st.ref)
		h.syncVM(st)
		simulator.Map.WithLock(vm, func() {
			simulator.Map.Update(vm, []types.PropertyChange{
				{Name: "runtime.consolidationNeeded", Val: false},
				{Name: "summary.runtime.consolidationNeeded", Val: false},
			})
		})
		return ref, nil
	})
}

// escapeEntityName escapes a new entity's name as vCenter does: '%' as
// %25, '/' as %2f, '\' as %5c.
func escapeEntityName(name string) string {
	name = strings.ReplaceAll(name, "%", "%25")
	name = strings.ReplaceAll(name, "/", "%2f")
	return strings.ReplaceAll(name, "\\", "%5c")
}

// hasNetwork tells whether a network (a port group) of that name exists.
func (h *harness) hasNetwork(name string) bool {
	for _, e := range simulator.Map.All("Network") {
		if e.Entity().Name == name {
			return true
		}
	}
	return false
}
