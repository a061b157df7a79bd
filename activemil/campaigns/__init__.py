"""activemil.campaigns"""
