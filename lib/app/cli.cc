#include "lib/app/cli.h"

#include <cstdio>

namespace dl {

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, ToolContext& ctx) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::puts(e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    ctx.say(ctx.program + ": " + what + " (see --help)");
    return exit_code(ErrorKind::usage);
  }
  return std::nullopt;
}

void add_key_flags(CLI::App& app, TlsFlags& f) {
  // TLS 1.3 below the tool's protocol; both sides need matching keys.
  // An empty value (`--psk "$PSK"` with PSK unset) would read as "not given": keys off, or a
  // listener's --pin or --ca dropped in silence. It is a usage error instead.
  const CLI::Validator named(
      [](std::string& v) { return v.empty() ? std::string("empty value (an unset variable?)") : std::string(); }, "");
  app.add_option("--psk", f.psk_file, "TLS with a pre-shared key: FILE holds one line [IDENTITY ]KEY (hex or base64, 16-48 bytes), mode 0600; the same file on both sides")
      ->type_name("FILE")
      ->check(named);
  app.add_option("--gen-psk", f.gen_psk_file, "Like --psk FILE, first writing a new random 256-bit key to FILE (mode 0600) if it does not exist")
      ->type_name("FILE")
      ->check(named);
  app.add_option("--cert", f.cert_file, "TLS with certificates: our certificate (chain), PEM; needs --key")
      ->type_name("FILE")
      ->check(named);
  app.add_option("--key", f.key_file, "The private key of --cert, PEM, mode 0600")
      ->type_name("FILE")
      ->check(named);
  app.add_option("--ca", f.ca_file, "Accept only peers whose certificate this CA (PEM) signed; a dialer also checks the host name")
      ->type_name("FILE")
      ->check(named);
  app.add_option("--pin", f.pin, "Accept only the peer whose public key has this SHA-256 (sha256:BASE64 or hex; see dl-security(7))")
      ->type_name("SHA256")
      ->check(named);
}

Status check_key_flags(const TlsFlags& f, bool listen, bool stream_endpoint) {
  if (!f.any()) return ok_status();
  if (!stream_endpoint) {
    return make_error(ErrorKind::usage, "--psk, --cert ...",
                      "keys need a TCP or unix endpoint: udp: has no TLS (DTLS is not supported)");
  }
  return TlsConfig::check(f, listen ? TlsRole::listener : TlsRole::dialer);
}

}  // namespace dl
