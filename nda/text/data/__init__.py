"""Data shipped with the text negatives (so no NLTK data is needed at run time):

- ``antonyms.tsv``: WordNet antonym pairs of the ``rules`` counterfactual (licence: ``WORDNET_LICENSE``);
- ``opinion_words.tsv`` and ``sentiment_antonyms.tsv``: the sentiment-bearing words (a subset of the Hu & Liu
  opinion lexicon, CC BY 4.0: ``OPINION_LEXICON_LICENSE``) and their opposite-polarity swaps, used by the
  ``polarity`` counterfactual.
"""
