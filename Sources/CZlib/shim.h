// zlib, for reading the gzip-compressed IDX files that MNIST and Fashion-MNIST ship as.
#include <zlib.h>
