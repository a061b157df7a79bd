"""activemil.hypotheses"""
