#include "lib/link/session.h"
