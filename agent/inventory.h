/*
 * ferry-agent inventory: what an admin checks first when setting up a
 * proxy (VMs, disks, controllers, datastores, CBT, snapshots, and whether
 * this proxy could hot-add each disk).
 */
#ifndef FERRY_AGENT_INVENTORY_H
#define FERRY_AGENT_INVENTORY_H

/* argv[0] is "inventory". Returns the process exit code. */
int agent_cmd_inventory(int argc, char **argv);

#endif
