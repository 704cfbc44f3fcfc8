"""WeChat Official Account and Mini Program customer-service channel."""
