"""Model families: each an assembly of speechseq.nn blocks plus a checkpoint key map."""
