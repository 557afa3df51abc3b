#include <iostream>

#include "api/remote_cli.hpp"

int main(int argc, char** argv) { return keel::api::remote_main(argc, argv, std::cout, std::cerr); }
