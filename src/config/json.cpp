#include "metalm/config/json.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_set>

#include "fields.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/suggest.hpp"

namespace metalm {
namespace {

using nlohmann::json;

std::string json_type(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "int";
    case json::value_t::number_float: return "float";
    case json::value_t::string: return "string";
    case json::value_t::array: return "list";
    case json::value_t::object: return "object";
    default: return "unknown";
  }
}

[[noreturn]] void wrong_type(const std::string& path, const std::string& expected, const json& j) {
  throw ConfigError(path + ": expected " + expected + ", found " + json_type(j) + " " + json_excerpt(j));
}

void read_value(const json& j, bool& out, const std::string& path) {
  if (!j.is_boolean()) wrong_type(path, "bool", j);
  out = j.get<bool>();
}

void read_value(const json& j, int64_t& out, const std::string& path) {
  if (j.is_number_integer()) {
    out = j.get<int64_t>();
  } else if (j.is_number_float() && std::isfinite(j.get<double>()) &&
             j.get<double>() == std::floor(j.get<double>()) && std::fabs(j.get<double>()) < 9e15) {
    out = static_cast<int64_t>(j.get<double>());  // 1e3 is a fine way to write 1000
  } else {
    wrong_type(path, "int", j);
  }
}

void read_value(const json& j, double& out, const std::string& path) {
  if (!j.is_number()) wrong_type(path, "float", j);
  out = j.get<double>();
}

void read_value(const json& j, std::string& out, const std::string& path) {
  if (!j.is_string()) wrong_type(path, "string", j);
  out = j.get<std::string>();
}

void read_value(const json& j, std::vector<int64_t>& out, const std::string& path) {
  if (!j.is_array()) wrong_type(path, "list of int", j);
  out.clear();
  for (std::size_t i = 0; i < j.size(); ++i) {
    int64_t v = 0;
    read_value(j[i], v, path + "[" + std::to_string(i) + "]");
    out.push_back(v);
  }
}

template <class E, std::enable_if_t<detail::is_enum_table<E>::value, int> = 0>
void read_value(const json& j, E& out, const std::string& path) {
  // No choice is anywhere near 64 characters; a longer string is quoted cut.
  if (!j.is_string() || j.get_ref<const std::string&>().size() > 64)
    wrong_type(path, "one of " + detail::enum_choices<E>(), j);
  out = detail::enum_parse<E>(j.get<std::string>(), path);
}

// Reads the keys of one section; keys that are not fields are errors.
template <class S>
void read_section(const json& j, S& section, const std::string& prefix, const std::string& origin);

struct Reader {
  const json& object;
  std::string prefix;
  std::string origin;
  std::vector<std::string> known;

  template <class T>
  void operator()(const char* key, T& field, const char*) {
    known.emplace_back(key);
    const auto it = object.find(key);
    if (it == object.end()) return;
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if constexpr (detail::is_section<T>::value) {
      read_section(*it, field, path, origin);
    } else {
      read_value(*it, field, path);
    }
  }
};

template <class S>
void read_section(const json& j, S& section, const std::string& prefix, const std::string& origin) {
  if (!j.is_object()) wrong_type(prefix.empty() ? "config" : prefix, "object", j);
  Reader reader{j, prefix, origin, {}};
  S::fields(section, reader);
  for (const auto& [key, value] : j.items()) {
    if (std::find(reader.known.begin(), reader.known.end(), key) != reader.known.end()) continue;
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    std::string msg = origin + ": unknown key \"" + excerpt(path) + "\"";
    const std::string hint = closest_match(key, reader.known);
    if (!hint.empty()) msg += " (did you mean \"" + (prefix.empty() ? hint : prefix + "." + hint) + "\"?)";
    throw ConfigError(msg);
  }
}

struct Writer {
  json* out;

  template <class T>
  void operator()(const char* key, const T& field, const char*) {
    if constexpr (detail::is_section<T>::value) {
      json inner = json::object();
      Writer w{&inner};
      T::fields(field, w);
      (*out)[key] = std::move(inner);
    } else if constexpr (detail::is_enum_table<T>::value) {
      (*out)[key] = detail::enum_name(field);
    } else {
      (*out)[key] = field;
    }
  }
};

template <class S>
json write_section(const S& s) {
  json j = json::object();
  Writer w{&j};
  S::fields(s, w);
  return j;
}

// Parses an override's text into JSON shaped like the key's current value.
json parse_override_value(const std::string& path, const std::string& text, const json& current) {
  auto fail = [&](const std::string& expected) -> json {
    throw ConfigError("--set " + path + "=" + excerpt(text) + ": expected " + expected);
  };
  switch (current.type()) {
    case json::value_t::boolean:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      return fail("bool (true or false)");
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: {
      try {
        std::size_t used = 0;
        const long long v = std::stoll(text, &used);
        if (used == text.size()) return static_cast<int64_t>(v);
      } catch (const std::exception&) {
      }
      return fail("int");
    }
    case json::value_t::number_float: {
      try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size() && std::isfinite(v)) return v;
      } catch (const std::exception&) {
      }
      return fail("float (a finite number)");
    }
    case json::value_t::string:
      // A config must be writable as JSON (config.json, `config show`), and
      // JSON text is UTF-8: dump() is the library's own check.
      try {
        (void)json(text).dump();
      } catch (const json::type_error&) {
        return fail("UTF-8 text");
      }
      return text;
    case json::value_t::array: {
      std::string body = text;
      if (body.empty() || body.front() != '[') body = "[" + body + "]";
      try {
        return parse_json(body, "--set " + path);
      } catch (const ConfigError&) {
        return fail("list, e.g. [0,100,500] or 0,100,500");
      }
    }
    default: return fail("a value");
  }
}

// Builds the document with nlohmann's own DOM builder while keeping the path
// of the value being read ("train.lr", "steps[3]"), so that errors can name
// the key, and refusing nesting beyond kMaxJsonDepth.
class StrictSax {
 public:
  StrictSax(json& root, const std::string& text, const std::string& origin, JsonError kind)
      : dom_(root, /*allow_exceptions=*/true), text_(text), origin_(origin), kind_(kind) {}

  bool null() { return value(dom_.null()); }
  bool boolean(bool v) { return value(dom_.boolean(v)); }
  bool number_integer(json::number_integer_t v) { return value(dom_.number_integer(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(dom_.number_unsigned(v)); }
  bool number_float(json::number_float_t v, const std::string& s) { return value(dom_.number_float(v, s)); }
  bool string(std::string& v) { return value(dom_.string(v)); }
  bool binary(json::binary_t& v) { return value(dom_.binary(v)); }
  bool start_object(std::size_t n) {
    enter(false);
    return dom_.start_object(n);
  }
  bool key(std::string& k) {
    Frame& f = frames_.back();
    f.key = k;
    // nlohmann keeps the last of two equal keys; a file that says two things
    // about one key is ambiguous, so neither is taken.
    if (!f.keys.insert(k).second)
      fail(origin_ + ": duplicate key \"" + path() + "\" (each key may appear once in an object)");
    return dom_.key(k);
  }
  bool end_object() {
    frames_.pop_back();
    return value(dom_.end_object());
  }
  bool start_array(std::size_t n) {
    enter(true);
    return dom_.start_array(n);
  }
  bool end_array() {
    frames_.pop_back();
    return value(dom_.end_array());
  }

  template <class Exception>
  bool parse_error(std::size_t byte, const std::string& token, const Exception& e) {
    // `byte` counts the characters read, the offending one included; a
    // number out of range is pointed at from its first character.
    std::size_t at = byte == 0 ? 0 : byte - 1;
    if (e.id == 406) at = byte >= token.size() ? byte - token.size() : 0;
    at = std::min(at, text_.size());
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < at; ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    const std::string where = origin_ + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
    if (e.id == 406)  // a number beyond a double's range, e.g. 1e999
      fail(where + path() + ": number " + excerpt(token) + " is out of range (a float holds at most about 1.8e308)");
    // nlohmann's text after "...column N: " says what was expected.
    std::string what = e.what();
    const auto detail = what.find(": ", what.find("column"));
    if (detail != std::string::npos) what = what.substr(detail + 2);
    fail(where + "malformed JSON (" + excerpt(what) + ")");
  }

 private:
  struct Frame {
    bool array = false;
    std::size_t index = 0;  // of the element being read (arrays)
    std::string key;        // of the member being read (objects)
    std::unordered_set<std::string> keys;  // every key of the object so far
  };

  [[noreturn]] void fail(const std::string& message) const {
    if (kind_ == JsonError::Config) throw ConfigError(message);
    throw FormatError(message);
  }

  void enter(bool array) {
    if (frames_.size() >= static_cast<std::size_t>(kMaxJsonDepth))
      fail(origin_ + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels, at " + path());
    frames_.push_back({array, 0, {}, {}});
  }

  bool value(bool ok) {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
    return ok;
  }

  std::string path() const {
    std::string p;
    for (const Frame& f : frames_) {
      if (f.array)
        p += "[" + std::to_string(f.index) + "]";
      else
        p += (p.empty() ? "" : ".") + f.key;
    }
    return p.empty() ? "top level" : excerpt(p);
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  const std::string& text_;
  const std::string& origin_;
  JsonError kind_;
  std::vector<Frame> frames_;
};

std::vector<std::string> keys_of(const json& object) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : object.items()) keys.push_back(k);
  return keys;
}

}  // namespace

json to_json(const RunConfig& c) { return write_section(c); }
json to_json(const ModelConfig& c) { return write_section(c); }

RunConfig run_config_from_json(const json& j, const std::string& origin) {
  RunConfig c;
  if (j.is_object() && j.contains(kRuntimeRecordKey)) {
    json settings = j;
    settings.erase(kRuntimeRecordKey);
    read_section(settings, c, "", origin);
  } else {
    read_section(j, c, "", origin);
  }
  return c;
}

ModelConfig model_config_from_json(const json& j, const std::string& origin) {
  ModelConfig c;
  read_section(j, c, "model", origin);
  return c;
}

void apply_override(RunConfig& c, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set " + excerpt(assignment) + ": expected section.key=value");
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);

  json j = to_json(c);
  json* node = &j;
  std::string walked;
  std::size_t start = 0;
  while (true) {
    const auto dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) {
      std::string msg = "--set: unknown key \"" + excerpt(path) + "\"";
      if (node->is_object()) {
        const std::string hint = closest_match(part, keys_of(*node));
        if (!hint.empty()) msg += " (did you mean \"" + walked + hint + "\"?)";
      }
      throw ConfigError(msg);
    }
    node = &(*node)[part];
    walked += part + ".";
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (node->is_object()) throw ConfigError("--set " + excerpt(path) + ": is a section, not a key");
  *node = parse_override_value(path, text, *node);
  c = run_config_from_json(j, "--set " + path);
}

json parse_json(const std::string& text, const std::string& origin, JsonError kind) {
  json root;
  StrictSax sax(root, text, origin, kind);
  json::sax_parse(text, &sax);
  return root;
}

json read_json_file(const std::string& path, JsonError kind) {
  return parse_json(read_file(path, kind == JsonError::Config ? InputKind::Config : InputKind::Json), path, kind);
}

std::string json_excerpt(const json& j) { return excerpt(j.dump()); }

void write_json_file(const std::string& path, const json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig c = path.empty() ? RunConfig{} : run_config_from_json(read_json_file(path), path);
  for (const auto& o : overrides) apply_override(c, o);
  resolve(c);
  return c;
}

}  // namespace metalm
