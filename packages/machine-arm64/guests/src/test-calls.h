/*
 * Hypercalls answered only by the test harness's router (src/testing/test-router.ts), in the
 * SMCCC vendor-hypervisor range. Real builds answer them NOT_SUPPORTED (-1).
 */
#define TEST_GET_MODE  0xC6000F01u /* -> x0 = mode the test chose */
#define TEST_SET_IRQ   0xC6000F02u /* x1 = vcpu, x2 = intid, x3 = level */
#define TEST_REPORT    0xC6000F03u /* x1 = value: recorded by the harness */
#define TEST_REMOVE_PAGES 0xC6000F04u /* x1 = gpa, x2 = pages: removed from the guest (x0 = how many) */
#define TEST_ADD_PAGES    0xC6000F05u /* x1 = gpa, x2 = pages: added back, zeroed (x0 = how many) */
