"""Data set tools: converters to the tf-crnn CSV format, synthetic generators, checks.

Their ``tf-crnn`` subcommands (prepare, alphabet, generate, fonts, validate) are in :mod:`tf_crnn.cli.datasets`.

Modules (imported on use; none needs TensorFlow at import):

- :mod:`~tf_crnn.datasets.synthetic`: rendered digits, words and text lines, handwritten digits.
- :mod:`~tf_crnn.datasets.text_spec`: :class:`~tf_crnn.datasets.text_spec.TextSpec`, what ``generate_text`` renders.
- :mod:`~tf_crnn.datasets.render`: the image effects and degradations the generators use.
- :mod:`~tf_crnn.datasets.fonts`: which font draws which symbol; symbol fonts.
- :mod:`~tf_crnn.datasets.converters`: ``prepare`` from common annotation formats.
- :mod:`~tf_crnn.datasets.pages`: PAGE XML / ALTO pages and their lines (:mod:`~tf_crnn.datasets.layout`,
  :mod:`~tf_crnn.datasets.page_xml`, :mod:`~tf_crnn.datasets.alto`, :mod:`~tf_crnn.datasets.mets`);
  :mod:`~tf_crnn.datasets.line_images` cuts the lines out of the page image.
- :mod:`~tf_crnn.datasets.alphabet_tools`: build / check lookup tables from CSVs.
- :mod:`~tf_crnn.datasets.validate`: decode every image, CTC feasibility, histograms.
- :mod:`~tf_crnn.datasets.compile`: CSVs to a compiled data set (TFRecord shards; it and validate import
  TensorFlow when they check images).
"""
