"""Language understanding: text analysis (jieba), the KB search index, intent classification."""
