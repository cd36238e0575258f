package main

// The fixed inventory the tests name (docs/VCSIM.md lists every name).

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	vcDatacenter = "ferry-dc"
	vcCluster    = "ferry-cluster"
	vcHost1      = "esx1.ferry.test"
	vcHost2      = "esx2.ferry.test"
	proxyVM      = "ferry-proxy"
)

type diskSpec struct {
	datastore  string
	controller string // lsilogic, lsilogic-sas, pvscsi, ide
	bus        int32
	unit       int32
	mode       types.VirtualDiskMode
	thick      bool // thick provisioned (else thin)
	eager      bool // thick, eagerly zeroed
}

// hardwareSpec is what a VM has beyond the defaults (2 vCPU, 2048 MB,
// BIOS, one vmxnet3): the VM configuration record's test case.
type hardwareSpec struct {
	cpus, coresPerSocket int32
	memoryMB             int64
	version, firmware    string
	secureBoot           bool
	scsiSharing          types.VirtualSCSISharing // of every SCSI controller
	sata                 bool                     // a SATA (AHCI) controller, key 15000
	nics                 []nicSpec                // after the first (vmxnet3, manual MAC)
	cdroms               []cdromSpec
	extra                []types.BaseOptionValue
}

type nicSpec struct {
	key         int32
	adapter     string // e1000e, e1000
	addressType types.VirtualEthernetCardMacType
	mac         string
}

// An empty CD-ROM drive (no medium) on IDE or SATA bus 0.
type cdromSpec struct {
	key        int32
	controller string // ide (key 200 + bus) or sata (key 15000)
	bus, unit  int32
}

type vmSpec struct {
	name  string
	host  int // index into the hosts
	guest string
	mac   string
	proxy bool
	disks []diskSpec
	hw    *hardwareSpec
}

// inventory is the fixed set of VMs. In ESX mode every VM lands on the one
// host, which mounts both datastores.
func inventory() []vmSpec {
	persistent := types.VirtualDiskModePersistent
	return []vmSpec{
		{name: proxyVM, host: 0, guest: "otherLinux64Guest", mac: "00:50:56:aa:bb:01", proxy: true,
			disks: []diskSpec{{"ds1", "pvscsi", 0, 0, persistent, false, false}}},
		{name: "vm-two-disks", host: 0, guest: "otherLinux64Guest", mac: "00:50:56:aa:bb:11",
			disks: []diskSpec{{"ds1", "lsilogic", 0, 0, persistent, false, false}, {"ds1", "pvscsi", 1, 0, persistent, false, false}}},
		{name: "vm-three-disks", host: 1, guest: "otherLinux64Guest", mac: "00:50:56:aa:bb:12",
			disks: []diskSpec{{"ds1", "pvscsi", 0, 0, persistent, false, false}, {"ds2", "pvscsi", 0, 1, persistent, false, false}, {"ds1", "ide", 0, 0, persistent, false, false}}},
		{name: "vm-independent", host: 0, guest: "otherLinux64Guest", mac: "00:50:56:aa:bb:13",
			disks: []diskSpec{{"ds1", "lsilogic", 0, 0, persistent, false, false}, {"ds1", "lsilogic", 0, 1, types.VirtualDiskModeIndependent_persistent, false, false}}},
		// Every kind of device a VM configuration record holds.
		{name: "vm-hardware", host: 0, guest: "windows9_64Guest", mac: "00:50:56:aa:bb:14",
			disks: []diskSpec{
				{"ds1", "lsilogic-sas", 0, 0, persistent, true, true},
				{"ds1", "lsilogic-sas", 0, 1, persistent, true, false},
				{"ds1", "pvscsi", 1, 0, types.VirtualDiskModeIndependent_persistent, false, false},
			},
			hw: &hardwareSpec{
				cpus: 4, coresPerSocket: 2, memoryMB: 4096, version: "vmx-19",
				firmware: "efi", secureBoot: true, scsiSharing: types.VirtualSCSISharingVirtualSharing,
				sata:   true,
				nics:   []nicSpec{{4001, "e1000e", types.VirtualEthernetCardMacTypeGenerated, "00:50:56:aa:bb:15"}},
				cdroms: []cdromSpec{{3002, "ide", 1, 0}, {16000, "sata", 0, 0}},
				extra: []types.BaseOptionValue{
					&types.OptionValue{Key: "disk.EnableUUID", Value: "TRUE"},
					&types.OptionValue{Key: "svga.present", Value: "FALSE"},
					// Never recorded: cloud-init data may hold secrets.
					&types.OptionValue{Key: "guestinfo.userdata", Value: "cGFzc3dvcmQ6IHNlY3JldA=="},
				}},
		},
	}
}

func newHarness(cfg *config, addr *net.TCPAddr) (*harness, error) {
	h := &harness{
		cfg:        cfg,
		addr:       addr,
		datastores: map[string]*dsInfo{},
		vms:        map[string]*vmState{},
		byRef:      map[types.ManagedObjectReference]*vmState{},
		disabled:   map[types.ManagedObjectReference][]disabledMethod{},
	}
	if err := h.prepareDatadir(); err != nil {
		return nil, err
	}

	var model *simulator.Model
	if cfg.esx {
		model = simulator.ESX()
	} else {
		model = simulator.VPX()
		model.Datacenter = 0
		model.Portgroup = 0
		model.Host = 0
		model.Cluster = 0
		model.ClusterHost = 0
	}
	model.Datastore = 0
	model.Machine = 0
	model.Autostart = false
	if err := model.Create(); err != nil {
		return nil, fmt.Errorf("create simulator model: %w", err)
	}
	h.model = model
	h.svc = model.Service

	ctx := context.Background()
	c, err := vim25.NewClient(ctx, h.svc)
	if err != nil {
		return nil, fmt.Errorf("in-process client: %w", err)
	}
	h.client = c

	if err := h.createHosts(ctx); err != nil {
		return nil, err
	}
	if err := h.createNetworks(ctx); err != nil {
		return nil, err
	}
	if err := h.createDatastores(ctx); err != nil {
		return nil, err
	}
	for _, spec := range inventory() {
		if err := h.createVM(ctx, spec); err != nil {
			return nil, fmt.Errorf("create VM %s: %w", spec.name, err)
		}
	}
	h.prepareService()
	return h, nil
}

// prepareDatadir creates DIR/ds1 and DIR/ds2. Leftovers from another run
// would make the inventory lie about its contents, so they are refused.
func (h *harness) prepareDatadir() error {
	dir, err := filepath.Abs(h.cfg.datadir)
	if err != nil {
		return err
	}
	h.cfg.datadir = dir
	for _, name := range []string{"ds1", "ds2"} {
		p := filepath.Join(dir, name)
		if entries, err := os.ReadDir(p); err == nil && len(entries) > 0 {
			return fmt.Errorf("datastore directory %s is not empty; give --datadir a fresh directory", p)
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		h.datastores[name] = &dsInfo{name: name, dir: p}
	}
	return nil
}

func (h *harness) createHosts(ctx context.Context) error {
	if h.cfg.esx {
		dc := simulator.Map.Get(esx.Datacenter.Reference()).(*simulator.Datacenter)
		host := simulator.Map.Get(esx.HostSystem.Reference()).(*simulator.HostSystem)
		h.datacenter = dc.Name
		h.hosts = []hostInfo{{name: host.Name, ref: host.Self, datastores: []string{"ds1", "ds2"}}}
		return nil
	}

	root := object.NewRootFolder(h.client)
	dc, err := root.CreateDatacenter(ctx, vcDatacenter)
	if err != nil {
		return fmt.Errorf("create datacenter: %w", err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	cluster, err := folders.HostFolder.CreateCluster(ctx, vcCluster, types.ClusterConfigSpecEx{})
	if err != nil {
		return fmt.Errorf("create cluster: %w", err)
	}
	h.datacenter = vcDatacenter
	h.cluster = vcCluster
	// Somewhere else than the defaults for restores to go: a VM folder
	// and a resource pool of the cluster.
	if _, err := folders.VmFolder.CreateFolder(ctx, "restored"); err != nil {
		return fmt.Errorf("create folder restored: %w", err)
	}
	pool, err := cluster.ResourcePool(ctx)
	if err != nil {
		return fmt.Errorf("cluster pool: %w", err)
	}
	if _, err := pool.Create(ctx, "restores", types.DefaultResourceConfigSpec()); err != nil {
		return fmt.Errorf("create pool restores: %w", err)
	}
	for i, name := range []string{vcHost1, vcHost2} {
		task, err := cluster.AddHost(ctx, types.HostConnectSpec{HostName: name}, true, nil, nil)
		if err != nil {
			return fmt.Errorf("add host %s: %w", name, err)
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("add host %s: %w", name, err)
		}
		ds := []string{"ds1"}
		if i == 1 {
			ds = append(ds, "ds2")
		}
		h.hosts = append(h.hosts, hostInfo{name: name, ref: info.Result.(types.ManagedObjectReference), datastores: ds})
	}
	return nil
}

// createNetworks adds the port group "Backup Network" beside "VM Network"
// (restores map NICs to it with --network). The simulator keeps one
// network object per datacenter, so it is added through the first host.
func (h *harness) createNetworks(ctx context.Context) error {
	if len(h.hosts) == 0 {
		return nil
	}
	host := object.NewHostSystem(h.client, h.hosts[0].ref)
	ns, err := host.ConfigManager().NetworkSystem(ctx)
	if err != nil {
		return fmt.Errorf("network system of %s: %w", h.hosts[0].name, err)
	}
	err = ns.AddPortGroup(ctx, types.HostPortGroupSpec{Name: "Backup Network", VswitchName: "vSwitch0"})
	if err != nil {
		return fmt.Errorf("add port group Backup Network: %w", err)
	}
	return nil
}

// createDatastores creates each datastore through the first host that
// mounts it and then mounts the same object on the other hosts; the
// simulator's CreateLocalDatastore would make a second object per host.
func (h *harness) createDatastores(ctx context.Context) error {
	for _, name := range []string{"ds1", "ds2"} {
		info := h.datastores[name]
		var mounts []hostInfo
		for _, host := range h.hosts {
			for _, n := range host.datastores {
				if n == name {
					mounts = append(mounts, host)
				}
			}
		}
		first := object.NewHostSystem(h.client, mounts[0].ref)
		dss, err := first.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return err
		}
		ds, err := dss.CreateLocalDatastore(ctx, name, info.dir)
		if err != nil {
			return fmt.Errorf("create datastore %s: %w", name, err)
		}
		info.ref = ds.Reference()
		dsObj := simulator.Map.Get(info.ref).(*simulator.Datastore)

		for _, m := range mounts[1:] {
			host := simulator.Map.Get(m.ref).(*simulator.HostSystem)
			sys := simulator.Map.Get(*host.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
			simulator.Map.WithLock(sys, func() {
				sys.Datastore = append(sys.Datastore, info.ref)
			})
			simulator.Map.WithLock(host, func() {
				host.Datastore = append([]types.ManagedObjectReference(nil), sys.Datastore...)
			})
			simulator.Map.WithLock(dsObj, func() {
				dsObj.Host = append(dsObj.Host, types.DatastoreHostMount{
					Key: m.ref,
					MountInfo: types.HostMountInfo{
						Path:       info.dir,
						AccessMode: string(types.HostMountModeReadWrite),
						Mounted:    types.NewBool(true),
						Accessible: types.NewBool(true),
					},
				})
			})
		}
		simulator.Map.WithLock(dsObj, func() {
			for i := range dsObj.Host {
				dsObj.Host[i].MountInfo.Path = info.dir
			}
		})
	}
	return nil
}

func controllerKey(controller string, bus int32) int32 {
	if controller == "ide" {
		return 200 + bus
	}
	return 1000 + bus
}

// diskKey follows vSphere's numbering: SCSI disks 2000 + 16*bus + unit, IDE
// disks 3000 + 2*bus + unit.
func diskKey(controller string, bus, unit int32) int32 {
	if controller == "ide" {
		return 3000 + 2*bus + unit
	}
	return 2000 + 16*bus + unit
}

// scsiPCISlot is the slotInfo.pciSlotNumber ESXi gives SCSI controller bus
// N of a VM (behind the PCIe root ports pciBridge4..7); the proxy's guest
// shows each as /sys/bus/pci/slots/<slot> (guest.go).
func scsiPCISlot(bus int32) int32 {
	return [...]int32{160, 224, 256, 1184}[bus&3]
}

func scsiController(kind string, bus int32, sharing types.VirtualSCSISharing) types.BaseVirtualDevice {
	if sharing == "" {
		sharing = types.VirtualSCSISharingNoSharing
	}
	scsi := types.VirtualSCSIController{
		VirtualController: types.VirtualController{
			VirtualDevice: types.VirtualDevice{
				Key:      controllerKey(kind, bus),
				SlotInfo: &types.VirtualDevicePciBusSlotInfo{PciSlotNumber: scsiPCISlot(bus)},
				DeviceInfo: &types.Description{
					Label:   fmt.Sprintf("SCSI controller %d", bus),
					Summary: map[string]string{"lsilogic": "LSI Logic", "lsilogic-sas": "LSI Logic SAS", "pvscsi": "VMware paravirtual SCSI"}[kind],
				},
			},
			BusNumber: bus,
		},
		HotAddRemove:       types.NewBool(true),
		SharedBus:          sharing,
		ScsiCtlrUnitNumber: 7,
	}
	switch kind {
	case "lsilogic":
		return &types.VirtualLsiLogicController{VirtualSCSIController: scsi}
	case "lsilogic-sas":
		return &types.VirtualLsiLogicSASController{VirtualSCSIController: scsi}
	}
	return &types.ParaVirtualSCSIController{VirtualSCSIController: scsi}
}

func (h *harness) createVM(ctx context.Context, spec vmSpec) error {
	if spec.proxy && h.cfg.proxyMAC != "" {
		spec.mac = h.cfg.proxyMAC
	}
	host := h.hosts[0]
	if spec.host < len(h.hosts) {
		host = h.hosts[spec.host]
	}
	st := &vmState{
		name:         spec.name,
		host:         host.name,
		biosUUID:     vmUUID("bios", spec.name, 0x42),
		instanceUUID: vmUUID("instance", spec.name, 0x50),
		vmx:          fmt.Sprintf("[ds1] %s/%s.vmx", spec.name, spec.name),
	}
	if spec.proxy && h.cfg.proxyBIOSUUID != "" {
		st.biosUUID = h.cfg.proxyBIOSUUID
	}

	// The proxy's own disk stays small whatever --disk-size says.
	capacity := h.cfg.diskSize
	if spec.proxy && capacity > 1<<30 {
		capacity = 1 << 30
	}

	var devices []types.BaseVirtualDevice
	haveController := map[int32]bool{}
	perDatastore := map[string]int{}
	for i, ds := range spec.disks {
		ckey := controllerKey(ds.controller, ds.bus)
		if ds.controller != "ide" && !haveController[ckey] {
			var sharing types.VirtualSCSISharing
			if spec.hw != nil {
				sharing = spec.hw.scsiSharing
			}
			devices = append(devices, scsiController(ds.controller, ds.bus, sharing))
			haveController[ckey] = true
		}
		// vSphere names a VM's disks vm.vmdk, vm_1.vmdk, ... per datastore.
		base := spec.name
		if n := perDatastore[ds.datastore]; n > 0 {
			base = fmt.Sprintf("%s_%d", spec.name, n)
		}
		perDatastore[ds.datastore]++
		key := diskKey(ds.controller, ds.bus, ds.unit)
		d := &diskState{
			vm:            st,
			key:           key,
			label:         fmt.Sprintf("Hard disk %d", i+1),
			datastore:     ds.datastore,
			dir:           spec.name,
			base:          base,
			uuid:          diskUUID(fmt.Sprintf("%s/%d", spec.name, key)),
			capacity:      capacity,
			mode:          ds.mode,
			controller:    ds.controller,
			controllerKey: ckey,
			bus:           ds.bus,
			unit:          ds.unit,
			thick:         ds.thick,
			eager:         ds.eager,
			states:        map[string][]blockHash{},
		}
		f := &diskFile{rel: path.Join(spec.name, base+".vmdk"), cid: uint32(stableSeed(d.uuid))}
		d.chain = []*diskFile{f}
		if err := os.MkdirAll(path.Join(h.datastores[ds.datastore].dir, spec.name), 0o755); err != nil {
			return err
		}
		tag := fmt.Sprintf("vm=%s disk=%d uuid=%s", spec.name, key, d.uuid)
		if err := fillDisk(h.flatPath(d, f), d.capacity, tag, stableSeed(tag)); err != nil {
			return fmt.Errorf("fill %s: %w", d.dsPath(f.rel), err)
		}
		if err := writeDescriptor(h.descPath(d, f), h.descriptorFor(d, 0)); err != nil {
			return err
		}
		st.disks = append(st.disks, d)

		unit := ds.unit
		devices = append(devices, &types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{
				Key:           key,
				DeviceInfo:    &types.Description{Label: d.label, Summary: fmt.Sprintf("%d KB", d.capacity/1024)},
				ControllerKey: ckey,
				UnitNumber:    &unit,
				Backing:       h.backing(d, 0),
			},
			CapacityInKB:    d.capacity / 1024,
			CapacityInBytes: d.capacity,
		})
	}

	nic := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{
		VirtualEthernetCard: types.VirtualEthernetCard{
			VirtualDevice: types.VirtualDevice{
				Key:        4000,
				DeviceInfo: &types.Description{Label: "Network adapter 1", Summary: "VM Network"},
				Backing: &types.VirtualEthernetCardNetworkBackingInfo{
					VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
				},
				Connectable: &types.VirtualDeviceConnectInfo{StartConnected: true, Connected: true, AllowGuestControl: true, Status: "ok"},
			},
			AddressType: string(types.VirtualEthernetCardMacTypeManual),
			MacAddress:  spec.mac,
		},
	}}
	devices = append(devices, nic)
	st.nics = []nicInfo{{Key: 4000, MAC: spec.mac}}
	if spec.hw != nil {
		devices = append(devices, h.extraDevices(spec.hw)...)
		for _, n := range spec.hw.nics {
			st.nics = append(st.nics, nicInfo{Key: n.key, MAC: n.mac})
		}
	}

	// The disk files exist already: no fileOperation, as when attaching.
	var deviceChange []types.BaseVirtualDeviceConfigSpec
	for _, dev := range devices {
		deviceChange = append(deviceChange, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd,
			Device:    dev,
		})
	}
	cspec := types.VirtualMachineConfigSpec{
		Name:         spec.name,
		GuestId:      spec.guest,
		NumCPUs:      2,
		MemoryMB:     2048,
		Uuid:         st.biosUUID,
		InstanceUuid: st.instanceUUID,
		Files:        &types.VirtualMachineFileInfo{VmPathName: st.vmx},
		DeviceChange: deviceChange,
	}
	if spec.proxy {
		cspec.ExtraConfig = []types.BaseOptionValue{&types.OptionValue{Key: "disk.EnableUUID", Value: "TRUE"}}
	}
	if hw := spec.hw; hw != nil {
		cspec.NumCPUs = hw.cpus
		cspec.NumCoresPerSocket = hw.coresPerSocket
		cspec.MemoryMB = hw.memoryMB
		cspec.Version = hw.version
		cspec.Firmware = hw.firmware
		cspec.ExtraConfig = hw.extra
		if hw.secureBoot {
			cspec.BootOptions = &types.VirtualMachineBootOptions{EfiSecureBootEnabled: types.NewBool(true)}
		}
	}

	dcRef := h.datacenterRef()
	folders, err := object.NewDatacenter(h.client, dcRef).Folders(ctx)
	if err != nil {
		return err
	}
	hostObj := object.NewHostSystem(h.client, host.ref)
	pool, err := hostObj.ResourcePool(ctx)
	if err != nil {
		return err
	}
	task, err := folders.VmFolder.CreateVM(ctx, cspec, pool, hostObj)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return err
	}
	st.ref = info.Result.(types.ManagedObjectReference)
	vmo := object.NewVirtualMachine(h.client, st.ref)
	if task, err = vmo.PowerOn(ctx); err != nil {
		return err
	}
	if _, err := task.WaitForResult(ctx, nil); err != nil {
		return fmt.Errorf("power on: %w", err)
	}

	h.vms[spec.name] = st
	h.vmOrder = append(h.vmOrder, spec.name)
	h.byRef[st.ref] = st
	h.fixControllers(st.ref)
	h.syncVM(st)

	vm := h.vmObject(st.ref)
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.consolidationNeeded", Val: false},
			{Name: "summary.runtime.consolidationNeeded", Val: false},
			{Name: "config.changeTrackingEnabled", Val: false},
		})
	})
	return nil
}

// extraDevices are a hardwareSpec's devices beyond disks, their SCSI
// controllers and the first NIC.
func (h *harness) extraDevices(hw *hardwareSpec) []types.BaseVirtualDevice {
	var devices []types.BaseVirtualDevice
	if hw.sata {
		devices = append(devices, &types.VirtualAHCIController{VirtualSATAController: types.VirtualSATAController{
			VirtualController: types.VirtualController{
				VirtualDevice: types.VirtualDevice{
					Key:        15000,
					DeviceInfo: &types.Description{Label: "SATA controller 0", Summary: "AHCI"},
				},
				BusNumber: 0,
			},
		}})
	}
	for i, n := range hw.nics {
		card := types.VirtualEthernetCard{
			VirtualDevice: types.VirtualDevice{
				Key:        n.key,
				DeviceInfo: &types.Description{Label: fmt.Sprintf("Network adapter %d", i+2), Summary: "VM Network"},
				Backing: &types.VirtualEthernetCardNetworkBackingInfo{
					VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
				},
				Connectable: &types.VirtualDeviceConnectInfo{StartConnected: true, Connected: true, AllowGuestControl: true, Status: "ok"},
			},
			AddressType: string(n.addressType),
			MacAddress:  n.mac,
		}
		switch n.adapter {
		case "e1000":
			devices = append(devices, &types.VirtualE1000{VirtualEthernetCard: card})
		default:
			devices = append(devices, &types.VirtualE1000e{VirtualEthernetCard: card})
		}
	}
	for i, cd := range hw.cdroms {
		ckey := 200 + cd.bus
		if cd.controller == "sata" {
			ckey = 15000
		}
		unit := cd.unit
		devices = append(devices, &types.VirtualCdrom{VirtualDevice: types.VirtualDevice{
			Key:           cd.key,
			DeviceInfo:    &types.Description{Label: fmt.Sprintf("CD/DVD drive %d", i+1), Summary: "Remote device"},
			ControllerKey: ckey,
			UnitNumber:    &unit,
			// An empty client device: the drive has no medium.
			Backing: &types.VirtualCdromRemotePassthroughBackingInfo{
				VirtualDeviceRemoteDeviceBackingInfo: types.VirtualDeviceRemoteDeviceBackingInfo{DeviceName: ""},
			},
			Connectable: &types.VirtualDeviceConnectInfo{AllowGuestControl: true, Status: "untried"},
		}})
	}
	return devices
}

func (h *harness) datacenterRef() types.ManagedObjectReference {
	if h.cfg.esx {
		return esx.Datacenter.Reference()
	}
	for _, e := range simulator.Map.All("Datacenter") {
		if e.Entity().Name == h.datacenter {
			return e.Reference()
		}
	}
	return types.ManagedObjectReference{}
}

// descriptorFor renders the descriptor of chain[i].
func (h *harness) descriptorFor(d *diskState, i int) descriptorInfo {
	f := d.chain[i]
	adapter := map[string]string{"lsilogic": "lsilogic", "lsilogic-sas": "lsilogic", "pvscsi": "pvscsi", "ide": "ide"}[d.controller]
	di := descriptorInfo{
		capacity:    d.capacity,
		flatName:    path.Base(flatName(f.rel)),
		uuid:        d.uuid,
		adapterType: adapter,
		cid:         f.cid,
	}
	if i > 0 {
		di.parentHint = path.Base(d.chain[i-1].rel)
		di.parentCID = d.chain[i-1].cid
	}
	return di
}

// fixControllers fills each controller's device list from the devices
// attached to it, as vSphere reports it (the simulator only does so for
// devices it placed itself).
func (h *harness) fixControllers(ref types.ManagedObjectReference) {
	vm := h.vmObject(ref)
	if vm == nil {
		return
	}
	simulator.Map.WithLock(vm, func() {
		attached := map[int32][]int32{}
		for _, dev := range vm.Config.Hardware.Device {
			d := dev.GetVirtualDevice()
			if d.ControllerKey != 0 {
				attached[d.ControllerKey] = append(attached[d.ControllerKey], d.Key)
			}
		}
		devices := make([]types.BaseVirtualDevice, len(vm.Config.Hardware.Device))
		copy(devices, vm.Config.Hardware.Device)
		changed := false
		for i, dev := range devices {
			c, ok := dev.(types.BaseVirtualController)
			if !ok {
				continue
			}
			keys := attached[dev.GetVirtualDevice().Key]
			sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
			if equalKeys(c.GetVirtualController().Device, keys) {
				continue
			}
			devices[i] = withControllerDevices(dev, keys)
			changed = true
		}
		if changed {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
		}
	})
}

func equalKeys(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// withControllerDevices returns a copy of a controller with a new device
// list.
func withControllerDevices(dev types.BaseVirtualDevice, keys []int32) types.BaseVirtualDevice {
	switch c := dev.(type) {
	case *types.VirtualLsiLogicController:
		x := *c
		x.Device = keys
		return &x
	case *types.ParaVirtualSCSIController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualLsiLogicSASController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualBusLogicController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualIDEController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualPCIController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualPS2Controller:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualSIOController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualAHCIController:
		x := *c
		x.Device = keys
		return &x
	case *types.VirtualNVMEController:
		x := *c
		x.Device = keys
		return &x
	}
	return dev
}

func stableSeed(label string) uint64 {
	b := stableBytes(label, 8)
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// prepareService gives the simulator's Service what its own NewServer would
// have set: the SDK registry, the login credentials and the public URL.
func (h *harness) prepareService() {
	h.svc.RegisterSDK(simulator.Map)
	h.svc.Listen = &url.URL{
		Scheme: "https",
		Host:   h.hostPort(),
		Path:   "/sdk",
		User:   url.UserPassword(h.cfg.username, h.cfg.password),
	}
	simulator.Map.SessionManager().ServiceHostName = h.hostPort()
	simulator.Map.SessionManager().TLSCert = func() string { return base64.StdEncoding.EncodeToString(h.certDER) }
}
