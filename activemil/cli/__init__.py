"""activemil.cli"""
