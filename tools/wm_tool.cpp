// wm_tool.cpp: `wm plugins` lists every plugin file found (usable or rejected, with the reason);
// `wm config [flags]` shows each effective setting and where it came from.
#include <wm/wm.hpp>

#include <boost/program_options.hpp>

#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "plugins";
  try {
    if (cmd == "plugins") {
      const wm::PluginScan scan = wm::scan_plugins();
      std::cout << "plugin directories:\n";
      for (const auto& d : scan.directories) std::cout << "  " << d << "\n";
      std::cout << "work managers:\n";
      for (const auto& p : scan.plugins)
        if (p.usable) std::cout << "  " << p.name << " " << p.version << "  " << p.description << "  (" << p.path << ")\n";
      bool any = false;
      for (const auto& p : scan.plugins) {
        if (p.usable) continue;
        if (!any) std::cout << "rejected files:\n";
        any = true;
        std::cout << "  " << p.path << ": " << p.reason << "\n";
      }
      return 0;
    }
    if (cmd == "config" || cmd == "help") {
      wm::WMEnvironment env;
      if (cmd == "help") {
        boost::program_options::options_description desc;
        env.add_wm_args(desc);
        std::cout << desc << "\n";
        return 0;
      }
      env.parse_args(argc - 1, argv + 1);
      std::cout << env.format_config_report();
      return 0;
    }
    std::cerr << "usage: wm plugins | wm config [--work-manager NAME] [--n-workers N] [--wm-...] | wm help\n";
    return 2;
  } catch (const wm::Error& e) {
    std::cerr << "wm: " << e.what() << "\n";
    return 1;
  }
}
