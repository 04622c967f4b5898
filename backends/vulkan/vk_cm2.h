/* VK_NV_cooperative_matrix2 (workgroup-scope cooperative matrices, tensor addressing, decode
 * functions): the prefill matmul behind LOOM_VK_CM2 (vk_cm2.c, shaders/matmul_cm2.comp).
 * Included by vk_internal.h. */
#ifndef LOOM_VK_CM2_H
#define LOOM_VK_CM2_H

#include <vulkan/vulkan.h>

/* The extension arrived in Vulkan headers 1.3.29x; Debian 12 ships 1.3.239. The definitions used
 * here, with the values of the Vulkan registry (vk.xml: extension 594, structure types
 * 1000593000..1000593002), when the installed headers lack them. */
#ifndef VK_NV_cooperative_matrix2
#define VK_NV_cooperative_matrix2 1
#define VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME "VK_NV_cooperative_matrix2"
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV ((VkStructureType)1000593000)
#define VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_FLEXIBLE_DIMENSIONS_PROPERTIES_NV ((VkStructureType)1000593001)
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_PROPERTIES_NV ((VkStructureType)1000593002)
typedef struct VkPhysicalDeviceCooperativeMatrix2FeaturesNV {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrixWorkgroupScope;
    VkBool32 cooperativeMatrixFlexibleDimensions;
    VkBool32 cooperativeMatrixReductions;
    VkBool32 cooperativeMatrixConversions;
    VkBool32 cooperativeMatrixPerElementOperations;
    VkBool32 cooperativeMatrixTensorAddressing;
    VkBool32 cooperativeMatrixBlockLoads;
} VkPhysicalDeviceCooperativeMatrix2FeaturesNV;
typedef struct VkPhysicalDeviceCooperativeMatrix2PropertiesNV {
    VkStructureType sType;
    void *pNext;
    uint32_t cooperativeMatrixWorkgroupScopeMaxWorkgroupSize;
    uint32_t cooperativeMatrixFlexibleDimensionsMaxDimension;
    uint32_t cooperativeMatrixWorkgroupScopeReservedSharedMemory;
} VkPhysicalDeviceCooperativeMatrix2PropertiesNV;
/* AType ... ResultType are VkComponentTypeKHR and scope a VkScopeKHR (32-bit enums) */
typedef struct VkCooperativeMatrixFlexibleDimensionsPropertiesNV {
    VkStructureType sType;
    void *pNext;
    uint32_t MGranularity;
    uint32_t NGranularity;
    uint32_t KGranularity;
    int32_t AType, BType, CType, ResultType;
    VkBool32 saturatingAccumulation;
    int32_t scope;
    uint32_t workgroupInvocations;
} VkCooperativeMatrixFlexibleDimensionsPropertiesNV;
typedef VkResult(VKAPI_PTR *PFN_vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV)(
    VkPhysicalDevice, uint32_t *, VkCooperativeMatrixFlexibleDimensionsPropertiesNV *);
#endif

/* What matmul_cm2.comp needs of a device: Vulkan 1.3 (its SPIR-V is 1.6), the extension with
 * workgroup scope, flexible dimensions, tensor addressing, block loads (decode functions) and
 * per-element operations (the bias), 16-bit storage and bufferDeviceAddress (the decode functions
 * read blocks through buffer references), and f16 x f16 + f32 at workgroup scope. */
typedef struct vk_cm2_caps {
    bool ok;
    VkPhysicalDeviceCooperativeMatrix2FeaturesNV f; /* as the device reports them */
    VkPhysicalDeviceCooperativeMatrix2PropertiesNV p;
    uint32_t gm, gn, gk;   /* granularity of f16 x f16 + f32 workgroup-scope shapes */
    uint32_t wg_mask;      /* workgroupInvocations offered for it: bit log2(n) */
} vk_cm2_caps;

/* Query p: caps (may be NULL) and desc (may be NULL): "yes (...)" or "no (why)". */
bool vk_cm2_query(VkInstance inst, VkPhysicalDevice p, vk_cm2_caps *caps, char *desc, size_t n);

#endif
