package main

// The ready-file JSON (also served at GET /ferry-test/info). Its shape is a
// contract: docs/VCSIM.md documents every field.

import (
	"os"
)

type readyDisk struct {
	Key            int32  `json:"key"`
	Label          string `json:"label"`
	File           string `json:"file"`
	FlatPath       string `json:"flat_path"`
	DescriptorPath string `json:"descriptor_path"`
	UUID           string `json:"uuid"`
	Size           int64  `json:"size"`
	Datastore      string `json:"datastore"`
	Controller     string `json:"controller"`
	ControllerKey  int32  `json:"controller_key"`
	Bus            int32  `json:"bus"`
	Unit           int32  `json:"unit"`
	Mode           string `json:"mode"`
}

type readyVM struct {
	Moref        string      `json:"moref"`
	InstanceUUID string      `json:"instance_uuid"`
	BiosUUID     string      `json:"bios_uuid"`
	Host         string      `json:"host"`
	VmxPath      string      `json:"vmx"`
	Disks        []readyDisk `json:"disks"`
	NICs         []nicInfo   `json:"nics"`
}

type readyHost struct {
	Moref      string   `json:"moref"`
	Datastores []string `json:"datastores"`
}

type readyJSON struct {
	URL            string               `json:"url"`
	Host           string               `json:"host"`
	Port           int                  `json:"port"`
	Thumbprint     string               `json:"thumbprint"`
	SHA1Thumbprint string               `json:"sha1_thumbprint"`
	CertFile       string               `json:"cert_file"`
	Username       string               `json:"username"`
	Password       string               `json:"password"`
	APIType        string               `json:"api_type"`
	Datacenter     string               `json:"datacenter"`
	Cluster        string               `json:"cluster"`
	Hosts          map[string]readyHost `json:"hosts"`
	Datastores     map[string]string    `json:"datastores"`
	DatastoreRefs  map[string]string    `json:"datastore_morefs"`
	VMs            map[string]readyVM   `json:"vms"`
	Control        string               `json:"control"`
	PID            int                  `json:"pid"`
}

func (h *harness) readyInfo() readyJSON {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := readyJSON{
		URL:            h.sdkURL(),
		Host:           h.addr.IP.String(),
		Port:           h.addr.Port,
		Thumbprint:     sha256Thumbprint(h.certDER),
		SHA1Thumbprint: sha1Thumbprint(h.certDER),
		CertFile:       h.certPath,
		Username:       h.cfg.username,
		Password:       h.cfg.password,
		APIType:        h.apiType(),
		Datacenter:     h.datacenter,
		Cluster:        h.cluster,
		Hosts:          map[string]readyHost{},
		Datastores:     map[string]string{},
		DatastoreRefs:  map[string]string{},
		VMs:            map[string]readyVM{},
		Control:        "https://" + h.hostPort() + "/ferry-test",
		PID:            os.Getpid(),
	}
	for _, host := range h.hosts {
		r.Hosts[host.name] = readyHost{Moref: host.ref.Value, Datastores: host.datastores}
	}
	for name, ds := range h.datastores {
		r.Datastores[name] = ds.dir
		r.DatastoreRefs[name] = ds.ref.Value
	}
	for _, st := range h.sortedVMs() {
		vm := readyVM{
			Moref:        st.ref.Value,
			InstanceUUID: st.instanceUUID,
			BiosUUID:     st.biosUUID,
			Host:         st.host,
			VmxPath:      st.vmx,
			NICs:         st.nics,
		}
		for _, d := range st.disks {
			base := d.chain[0]
			vm.Disks = append(vm.Disks, readyDisk{
				Key:            d.key,
				Label:          d.label,
				File:           d.dsPath(base.rel),
				FlatPath:       h.flatPath(d, base),
				DescriptorPath: h.descPath(d, base),
				UUID:           d.uuid,
				Size:           d.capacity,
				Datastore:      d.datastore,
				Controller:     d.controller,
				ControllerKey:  d.controllerKey,
				Bus:            d.bus,
				Unit:           d.unit,
				Mode:           string(d.mode),
			})
		}
		r.VMs[st.name] = vm
	}
	return r
}
