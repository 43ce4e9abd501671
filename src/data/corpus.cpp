#include "metalm/data/corpus.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace metalm {
namespace fs = std::filesystem;
namespace {

// Regular files under `dir`, sorted by path so the corpus order is stable.
std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Appends the word of one `word/tag` token (tag after the last slash:
// words such as 1/2 keep theirs).
void append_word(std::string& out, std::string_view token) {
  const auto slash = token.rfind('/');
  std::string_view word = slash == std::string_view::npos || slash == 0 ? token : token.substr(0, slash);
  if (word == "``" || word == "''") word = "\"";
  if (!out.empty() && out.back() != '\n') out += ' ';
  out.append(word.data(), word.size());
}

}  // namespace

bool is_brown_file_name(const std::string& name) {
  return name.size() == 4 && name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' &&
         std::isdigit(static_cast<unsigned char>(name[2])) && std::isdigit(static_cast<unsigned char>(name[3]));
}

std::string detag_brown(const std::string& tagged) {
  // Sentences are lines; paragraphs are separated by blank lines.
  std::string out;
  bool in_paragraph = false;
  std::istringstream lines(tagged);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t pos = 0;
    bool any = false;
    while (pos < line.size()) {
      while (pos < line.size() && std::isspace(static_cast<unsigned char>(line[pos]))) ++pos;
      const std::size_t start = pos;
      while (pos < line.size() && !std::isspace(static_cast<unsigned char>(line[pos]))) ++pos;
      if (pos > start) {
        append_word(out, std::string_view(line).substr(start, pos - start));
        any = true;
      }
    }
    if (any) {
      in_paragraph = true;
    } else if (in_paragraph) {
      out += '\n';
      in_paragraph = false;
    }
  }
  if (in_paragraph) out += '\n';
  return out;
}

std::vector<Document> read_corpus(const std::vector<std::string>& paths, const std::string& format) {
  if (format != "text" && format != "brown")
    throw ConfigError("unknown corpus format '" + format + "' (expected text or brown)");
  const bool brown = format == "brown";
  std::vector<Document> docs;
  for (const auto& p : paths) {
    const fs::path path(p);
    if (!fs::exists(path)) throw IoError("input " + p + " does not exist");
    std::vector<fs::path> files;
    if (fs::is_directory(path)) {
      for (auto& f : files_under(path))
        if (!brown || is_brown_file_name(f.filename().string())) files.push_back(std::move(f));
      if (files.empty())
        throw IoError("input directory " + p + " holds no " + (brown ? "Brown files (c[a-r][0-9][0-9])" : "files"));
    } else {
      files.push_back(path);
    }
    for (const auto& f : files) {
      std::string text = read_file(f.string());
      docs.push_back({f.string(), brown ? detag_brown(text) : std::move(text)});
    }
  }
  return docs;
}

}  // namespace metalm
