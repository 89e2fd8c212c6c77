#include "tools/commands.h"

#include <string>

#include "core/error.h"

namespace muongpt {

cxxopts::ParseResult parse_command_line(cxxopts::Options& opts, int argc, char** argv) {
  cxxopts::ParseResult args = opts.parse(argc, argv);
  if (!args.unmatched().empty()) {
    const std::string& stray = args.unmatched().front();
    const bool looks_like_set = stray.find('=') != std::string::npos && stray[0] != '-';
    fail(opts.program(), "unexpected argument '", stray, "' (",
         looks_like_set ? "a config override is --set section.key=value; " : "", "see --help)");
  }
  return args;
}

}  // namespace muongpt
