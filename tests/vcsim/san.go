package main

// VMFS datastores for the san transport's tests: --san-lun DATASTORE=IMAGE[,IMAGE2]
// makes that datastore report type VMFS and info.vmfs.extent[] with one NAA
// id per LUN image, lists those LUNs in each host's storage devices, and
// rebuilds the images from the datastore's directory with tests/tools/mkvmfs6
// whenever a snapshot freezes a disk (and at start), so a proxy reading the
// images as LUNs sees the frozen disks as a VMFS6 volume would hold them.
// Emulated: the images are written by mkvmfs6, not by ESXi.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// sanLUNSize is each LUN image's size: 17 MiB of LVM header and 4 segments.
const sanLUNSize = (17 << 20) + 4*(256<<20)

type sanVolume struct {
	images []string
	naa    []string
	seed   int
}

var sanMu sync.Mutex

// parseSanLUN parses DATASTORE=IMAGE[,IMAGE2].
func parseSanLUN(cfg *config, v string) error {
	name, imgs, ok := strings.Cut(v, "=")
	if !ok || name == "" || imgs == "" {
		return fmt.Errorf("--san-lun %q: want DATASTORE=IMAGE[,IMAGE2]", v)
	}
	if cfg.sanLUNs == nil {
		cfg.sanLUNs = map[string]*sanVolume{}
	}
	if _, dup := cfg.sanLUNs[name]; dup {
		return fmt.Errorf("--san-lun %s given twice", name)
	}
	vol := &sanVolume{images: strings.Split(imgs, ","), seed: len(cfg.sanLUNs) + 1}
	for i := range vol.images {
		// NAA type 6 ids, stable per datastore and LUN.
		sum := sha256.Sum256([]byte(fmt.Sprintf("ferry-vcsim san %s %d", name, i)))
		vol.naa = append(vol.naa, "naa.6000c29"+hex.EncodeToString(sum[:])[:25])
	}
	cfg.sanLUNs[name] = vol
	return nil
}

// setupSAN marks the VMFS datastores and lists their LUNs on every host,
// then writes the first images.
func (h *harness) setupSAN() error {
	for name, vol := range h.cfg.sanLUNs {
		info, ok := h.datastores[name]
		if !ok {
			return fmt.Errorf("--san-lun %s: no such datastore", name)
		}
		ds := simulator.Map.Get(info.ref).(*simulator.Datastore)
		simulator.Map.WithLock(ds, func() {
			ds.Summary.Type = "VMFS"
			var base types.DatastoreInfo
			if bi, ok := ds.Info.(types.BaseDatastoreInfo); ok && bi != nil {
				base = *bi.GetDatastoreInfo()
			}
			var extents []types.HostScsiDiskPartition
			for _, id := range vol.naa {
				extents = append(extents, types.HostScsiDiskPartition{DiskName: id, Partition: 1})
			}
			ds.Info = &types.VmfsDatastoreInfo{
				DatastoreInfo: base,
				Vmfs: &types.HostVmfsVolume{
					HostFileSystemVolume: types.HostFileSystemVolume{
						Type: "VMFS", Name: name, Capacity: int64(len(vol.images)) * 4 * (256 << 20),
					},
					BlockSizeMb:  1,
					MajorVersion: 6,
					Version:      "6.82",
					Uuid:         vol.naa[0][4:12] + "-ferry-vcsim",
					Extent:       extents,
				},
			}
		})
		for _, hi := range h.hosts {
			host := simulator.Map.Get(hi.ref).(*simulator.HostSystem)
			simulator.Map.WithLock(host, func() {
				if host.Config == nil {
					return
				}
				if host.Config.StorageDevice == nil {
					host.Config.StorageDevice = &types.HostStorageDeviceInfo{}
				}
				for _, id := range vol.naa {
					host.Config.StorageDevice.ScsiLun = append(host.Config.StorageDevice.ScsiLun,
						&types.HostScsiDisk{ScsiLun: types.ScsiLun{
							HostDevice:    types.HostDevice{DeviceName: "/vmfs/devices/disks/" + id, DeviceType: "disk"},
							Key:           "key-vim.host.ScsiDisk-" + id,
							Uuid:          id[4:],
							CanonicalName: id,
							LunType:       "disk",
							Vendor:        "FERRY",
							Model:         "vcsim san LUN",
						}})
				}
			})
		}
		if err := h.rebuildSAN(name); err != nil {
			return err
		}
	}
	return nil
}

// rebuildSAN writes the datastore's disks (descriptors and flat extents)
// as a VMFS6 volume on its LUN images.
func (h *harness) rebuildSAN(name string) error {
	vol := h.cfg.sanLUNs[name]
	if vol == nil {
		return nil
	}
	sanMu.Lock()
	defer sanMu.Unlock()
	dir := h.datastores[name].dir
	var files []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && strings.HasSuffix(p, ".vmdk") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("san: %s: %w", name, err)
	}
	sort.Strings(files)
	// Flat files of the VMs named by --san-thick are laid out thick.
	thick := map[string]bool{}
	for _, st := range h.vms {
		for _, d := range st.disks {
			if d.datastore != name || !h.cfg.sanThick[st.name] {
				continue
			}
			for _, f := range d.chain {
				thick[filepath.Join(dir, flatName(f.rel))] = true
			}
		}
	}
	args := []string{strings.Join(vol.images, ","), "--size", fmt.Sprint(sanLUNSize),
		"--uuid-seed", fmt.Sprint(vol.seed), "--label", name}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		fi, err := os.Stat(f)
		if err != nil {
			return err
		}
		// Descriptors fit in their file descriptor; extents are thin.
		alloc := "thin"
		if fi.Size() <= 3584 || thick[f] {
			alloc = "thick"
		}
		args = append(args, "--file", rel+"="+f+","+alloc)
	}
	out, err := exec.Command(h.cfg.mkvmfs6, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("san: rebuilding %s with %s: %v: %s", name, h.cfg.mkvmfs6, err, out)
	}
	return nil
}

// rebuildSANFor rebuilds the volumes holding any of the VM's disks.
func (h *harness) rebuildSANFor(st *vmState) error {
	seen := map[string]bool{}
	for _, d := range st.disks {
		if h.cfg.sanLUNs[d.datastore] != nil && !seen[d.datastore] {
			seen[d.datastore] = true
			if err := h.rebuildSAN(d.datastore); err != nil {
				return err
			}
		}
	}
	return nil
}
