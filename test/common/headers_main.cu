// main() of the public_headers check; every other translation unit includes one header.
#include "beam/beam.cuh"

int main() { return 0; }
