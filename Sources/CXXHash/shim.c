// Empty: the target exists to link libxxhash and export its header.
#include "CXXHash.h"
