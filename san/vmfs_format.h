/*
 * VMFS6 on-disk structures as Ferry's reader uses them: every offset and
 * magic number in one place. All integers are little-endian. The numbers
 * were checked against two independent readers, vmfs6-tools (libvmfs) and
 * dissect.vmfs; docs/SAN.md lists where those two disagree and what Ferry
 * does. Private to san/.
 */
#ifndef FERRY_SAN_VMFS_FORMAT_H
#define FERRY_SAN_VMFS_FORMAT_H

/* ---- partition table ---------------------------------------------------- */
#define GPT_SIGNATURE "EFI PART"
#define GPT_MAX_ENTRIES 1024
#define MBR_TYPE_VMFS 0xfb
#define MBR_TYPE_GPT 0xee

/* ---- LVM (offsets from the partition start) -------------------------------- */
#define LVM_HEADER_OFFSET 0x100000
#define LVM_MAGIC 0xC001D00Du
#define LVM_MAJOR_VMFS6 6
#define LVM_MAJOR_VMFS5 5
#define LVM_SEGMENT (256ull << 20)
/* device metadata */
#define LVM_OFS_MAJOR 0x04
#define LVM_OFS_TOTAL_BYTES 0x5e
#define LVM_OFS_DATA_OFFSET 0x7a
#define LVM_OFS_MD_ALIGNMENT 0xca
/* the one volume descriptor, mdAlignment after the device metadata */
#define LVM_VOL_OFS_SIZE 0x00
#define LVM_VOL_OFS_GENERATION 0x08
#define LVM_VOL_OFS_UUID 0x54
#define LVM_VOL_OFS_NUM_PES 0x74
#define LVM_VOL_OFS_FIRST_PE 0x78
#define LVM_VOL_OFS_LAST_PE 0x80
#define LVM_VOL_OFS_NUM_DEVS 0x90
#define LVM_MAX_SEGMENTS (1u << 20) /* 256 TiB */

/* ---- FS3 descriptor (logical volume offset 2 MiB) ------------------------- */
#define FS_DESC_OFFSET 0x200000
#define FS_MAGIC 0x2FABF15Eu
#define FS_MAGIC_VMFSL 0x2FABF15Fu
#define FS_MAJOR_VMFS6 24
#define FS_OFS_MAJOR 0x04
#define FS_OFS_LABEL 0x1d
#define FS_LABEL_LEN 128
#define FS_OFS_FILE_BLOCK_SIZE 0xa1
#define FS_OFS_LVM_UUID 0xb1
#define FS_OFS_FDC_CG_OFFSET 0xd1
#define FS_OFS_FDC_CLUSTERS_PER_GROUP 0xd5
#define FS_OFS_SUB_BLOCK_SIZE 0xd9
#define FS_OFS_MD_ALIGNMENT 0x134
#define FS_OFS_SFB_TO_LFB_SHIFT 0x138
#define FS_DESC_LEN 0x200

/* ---- addresses: low 3 bits are the type ------------------------------------ */
#define ADDR_TYPE(a) ((unsigned)((a) & 7))
#define ADDR_SFB 1
#define ADDR_SB 2
#define ADDR_PB 3
#define ADDR_FD 4
#define ADDR_PB2 5
#define ADDR_LFB 7
/* small/large file blocks: to-be-zeroed bitmap, one bit an eighth */
#define ADDR_TBZ(a) ((unsigned)(((a) >> 7) & 0xff))
#define SFB_CLUSTER(a) ((uint64_t)(((a) >> 15) & 0x7fffffff))
#define SFB_RESOURCE(a) ((uint64_t)(((a) >> 51) & 0x1fff))
#define LFB_BLOCK(a) ((uint64_t)(((a) >> 15) & 0x7fffffff))
/* sub-blocks and pointer blocks (64-bit form) */
#define SB_CLUSTER(a) ((uint64_t)(((a) >> 6) & 0xfffffffffull))
#define SB_RESOURCE(a) ((uint64_t)(((a) >> 56) & 0xff))
/* file descriptors (32-bit) */
#define FD_CLUSTER(a) (((a) >> 6) & 0xffffu)
#define FD_RESOURCE(a) (((a) >> 22) & 0x3ffu)

#define ROOT_DIR_ADDR 0x00000004u
#define FBB_ADDR 0x00400004u
#define FDC_ADDR 0x00800004u
#define PBC_ADDR 0x00C00004u
#define SBC_ADDR 0x01000004u
#define PB2_ADDR 0x01800004u

/* ---- resource files: metadata at the start of the file ---------------------- */
#define RES_SIGNATURE 0x72666D64u /* "rfmd" */
#define RES_OFS_RPC 0x00
#define RES_OFS_CPG 0x04
#define RES_OFS_CG_OFFSET 0x08
#define RES_OFS_RESOURCE_SIZE 0x0c
#define RES_OFS_CG_SIZE 0x10
#define RES_OFS_NUM_LO 0x14
#define RES_OFS_NUM_CG 0x18
#define RES_OFS_NUM_HI 0x1c
#define RES_OFS_SIGNATURE 0x20
#define RES_OFS_FLAGS 0x28
#define RES_OFS_CHILD 0x34
#define RES_META_LEN 0x58
#define RES_FLAG_PARENT 0x2

/* ---- file descriptors: lock block, then metadata block -------------------- */
#define FD_LOCK_MAGIC 0x10C00001u
/* in the metadata block (mdAlignment into the descriptor) */
#define FDM_OFS_ADDR 0x00
#define FDM_OFS_TYPE 0x0c
#define FDM_OFS_LENGTH 0x14
#define FDM_OFS_BLOCK_SIZE 0x1c
#define FDM_OFS_ZLA 0x44
#define FDM_OFS_BLOCK_SHIFT 0x89
#define FD_TYPE_DIR 2
#define FD_TYPE_FILE 3
#define FD_TYPE_SYMLINK 4
#define FD_TYPE_SYSFILE 5
#define FD_TYPE_RDM 6
#define ZLA_SFB 1
#define ZLA_SB 2
#define ZLA_PB 3
#define ZLA_PB2 5
#define ZLA_DOUBLE 0x10D0
#define ZLA_RESIDENT 0x10D1
#define FD_ADDRS 320
#define FD_ADDRS_BYTES (FD_ADDRS * 8) /* at the end of the descriptor */
#define FD_RESIDENT_HEADER 512 /* resident data after this much metadata */
#define PB_POINTERS 8192        /* 64 KiB pointer blocks */

/* ---- directories ---------------------------------------------------------- */
#define DIR_VERSION 0xF50001u
#define DIR_VERSION_DEBUG 0xFDC001u
#define DIR_HEADER_BLOCK 0x10000
#define DIR_OFS_NUM_AMAP 0x0c
#define DIR_OFS_AMAP 0x10
#define DIR_MAX_AMAP 128
#define DIR_OFS_SELF 0x3b8
#define DIR_BLOCK_HEADER 0x40
#define DIR_ENTRY_LEN 0x120
#define DIR_ENTRY_OFS_TYPE 0x00
#define DIR_ENTRY_OFS_ADDR 0x04
#define DIR_ENTRY_OFS_NAME 0x18
#define DIR_NAME_LEN 256
#define DIR_BLOCK_DIRENT 1
#define DIR_MAX_SIZE (64u << 20)

#endif
