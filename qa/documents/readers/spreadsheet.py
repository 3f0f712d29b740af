"""Excel workbooks (.xlsx, openpyxl): each sheet a table, cited under the sheet's name."""

import datetime
import io
import zipfile

from qa.documents.readers.extracted import Extracted, TextBuilder
from qa.documents.tables import clean_cell, row_lines, title_row
from qa.errors import DocumentError, short_reason


def read_xlsx(raw: bytes) -> Extracted:
    """Each sheet of an .xlsx as a table cited under the sheet's name: its first row with text is the header.

    Formulas are read as the values Excel last saved with them (a file written by a program that
    never computed them has none)."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except zipfile.BadZipFile as error:
        raise DocumentError(f"broken .xlsx archive ({short_reason(error)})") from None
    except Exception as error:  # openpyxl raises KeyError, InvalidFileException, lxml errors… on damaged packages
        raise DocumentError(f"broken .xlsx archive ({short_reason(error)})") from None
    builder = TextBuilder()
    try:
        for sheet in workbook.worksheets:
            title, rows = title_row([[_excel_cell(value) for value in row] for row in sheet.iter_rows(values_only=True)])
            name = clean_cell(sheet.title)
            builder.table(f"{name} · {title}" if title else name, row_lines(rows))
    except Exception as error:  # a damaged sheet inside a readable package
        raise DocumentError(f"broken .xlsx archive ({short_reason(error)})") from None
    finally:
        workbook.close()
    return builder.result()


def _excel_cell(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores every number as a float: 2025.0 is the year 2025
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    return clean_cell(value)
