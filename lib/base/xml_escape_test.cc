#include "lib/base/xml_escape.h"

#include <doctest/doctest.h>
#include <string>

using namespace dl;

TEST_CASE("xml_escape: markup escaped, forbidden control characters replaced") {
  CHECK(xml_escape("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;");
  CHECK(xml_escape(std::string_view("x\x01y\tz\n", 6)) == "x?y\tz\n");
}
